"""The combiner Lambda: the Signal API behind API Gateway (``combiner.handler.handler``)."""
