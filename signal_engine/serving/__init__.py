"""Serving signals: the model bundle, the NumPy-only combine path, and the Signal API.

Nothing imported here at package level: the combiner Lambda imports only the modules it needs, so its
import graph stays free of pandas, scikit-learn and SciPy.
"""
