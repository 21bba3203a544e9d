"""The kernel bank of seed 001: named convolution templates, shared and per archetype.

1-D templates are arrays (taps, channels) over the bar channels of
:data:`BAR_CHANNELS`, oldest tap first, applied causally (the last tap meets the current bar).
2-D templates are arrays (rows, columns) over an image: a chart (price bins low to high x time) for bar
data, an implied-volatility grid (time x strike) for options. The Keras experts initialise their
convolution layers with these arrays and keep them trainable.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

BAR_CHANNELS = ("close", "open", "high", "low", "volume")
CLOSE, OPEN = 0, 1


def _on_channel(taps: np.ndarray, channel: int = CLOSE) -> np.ndarray:
    kernel = np.zeros((len(taps), len(BAR_CHANNELS)))
    kernel[:, channel] = taps
    return kernel


def box(length: int) -> np.ndarray:
    """Simple moving average: ``length`` equal taps summing to 1."""
    return np.full(length, 1.0 / length)


def exponential(span: int) -> np.ndarray:
    """Exponential moving average truncated at ``span`` taps, alpha = 2 / (span + 1), summing to 1."""
    alpha = 2.0 / (span + 1.0)
    taps = alpha * (1.0 - alpha) ** np.arange(span)[::-1]
    return taps / taps.sum()


def gaussian(length: int, sigma: float) -> np.ndarray:
    """Centred Gaussian of ``length`` taps, summing to 1."""
    x = np.arange(length) - (length - 1) / 2.0
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _zero_mean_unit(taps: np.ndarray) -> np.ndarray:
    centred = taps - taps.mean()
    return centred / np.linalg.norm(centred)


def _bumps(length: int, centres: tuple[float, ...], heights: tuple[float, ...], width: float) -> np.ndarray:
    x = np.arange(length)[:, None]
    return (np.asarray(heights)[None, :] * np.exp(-0.5 * ((x - np.asarray(centres)[None, :]) / width) ** 2)).sum(1)


def head_and_shoulders(length: int = 25) -> np.ndarray:
    """Three peaks, the middle one highest (shoulder 0.6, head 1.0, shoulder 0.6), zero mean, unit norm."""
    third = (length - 1) / 4.0
    return _zero_mean_unit(_bumps(length, (third, 2 * third, 3 * third), (0.6, 1.0, 0.6), length / 12.0))


def double_bottom(length: int = 20) -> np.ndarray:
    """Two equal troughs with a peak between them (a W), zero mean, unit norm."""
    third = (length - 1) / 3.0
    return _zero_mean_unit(-_bumps(length, (third, 2 * third), (1.0, 1.0), length / 10.0))


def gap_detector() -> np.ndarray:
    """1 x 5 high-pass differentiator: today's open less the mean of the four previous closes."""
    kernel = np.zeros((5, len(BAR_CHANNELS)))
    kernel[4, OPEN] = 1.0
    kernel[:4, CLOSE] = -0.25
    return kernel


def long_tail_mean_reversion(length: int = 11) -> np.ndarray:
    """The current close less a 1/lag-weighted mean of the previous ``length - 1`` closes."""
    weights = 1.0 / np.arange(length - 1, 0, -1)
    taps = np.concatenate((-weights / weights.sum(), [1.0]))
    return taps


def mean_crossover_residual(fast: int = 5, slow: int = 20) -> np.ndarray:
    """SMA(fast) - SMA(slow) as one ``slow``-tap kernel."""
    taps = -box(slow)
    taps[-fast:] += 1.0 / fast
    return taps


SOBEL_TIME = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_LEVEL = SOBEL_TIME.T.copy()
LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
SMILE_CURVATURE = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 1.0], [0.0, 0.0, 0.0]])
DIAGONAL_UP = np.eye(5) - 1.0 / 5.0
DIAGONAL_DOWN = np.fliplr(np.eye(5)) - 1.0 / 5.0

SHARED_1D: dict[str, np.ndarray] = {
    **{f"sma_{k}": _on_channel(box(k)) for k in (5, 20, 50)},
    **{f"ema_{k}": _on_channel(exponential(k)) for k in (5, 20, 50)},
    "gap_highpass_5": gap_detector(),
    "gauss_5_s1": _on_channel(gaussian(5, 1.0)),
    "gauss_5_s2": _on_channel(gaussian(5, 2.0)),
}
SHARED_2D: dict[str, np.ndarray] = {"sobel_time": SOBEL_TIME, "sobel_level": SOBEL_LEVEL}

SPECIAL_1D: dict[str, dict[str, np.ndarray]] = {
    "crypto_hft": {
        "dog_11_s1_s3": _on_channel(gaussian(11, 1.0) - gaussian(11, 3.0)),
        "mean_reversion_11": _on_channel(long_tail_mean_reversion(11)),
        "delta4": _on_channel(np.array([1.0, -4.0, 6.0, -4.0, 1.0])),
    },
    "equity_intraday": {
        "momentum_comb": _on_channel(np.array([-1.0, -2.0, 0.0, 2.0, 1.0])),
        "ramp_ascending": _on_channel(np.arange(1.0, 6.0) / 15.0),
        "ramp_descending": _on_channel(np.arange(5.0, 0.0, -1.0) / 15.0),
    },
    "equity_daily": {
        "head_and_shoulders": _on_channel(head_and_shoulders(25)),
        "double_bottom": _on_channel(double_bottom(20)),
    },
    "futures_trend": {"trend_7": _on_channel(np.arange(-3.0, 4.0) / 28.0)},
    "options_skew": {},
    "low_vol_etf": {
        "gauss_11_s4": _on_channel(gaussian(11, 4.0)),
        "mean_crossover_residual": _on_channel(mean_crossover_residual(5, 20)),
    },
}
SPECIAL_2D: dict[str, dict[str, np.ndarray]] = {
    "crypto_hft": {},
    "equity_intraday": {},
    "equity_daily": {},
    "futures_trend": {"diagonal_up": DIAGONAL_UP, "diagonal_down": DIAGONAL_DOWN},
    "options_skew": {"laplacian": LAPLACIAN, "smile_curvature": SMILE_CURVATURE},
    "low_vol_etf": {},
}


def kernel_bank(archetype: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The 1-D and 2-D templates of an archetype: the shared building blocks plus its own kernels."""
    if archetype not in SPECIAL_1D:
        raise ValueError(f"unknown archetype {archetype!r}; expected one of {sorted(SPECIAL_1D)}")
    return {**SHARED_1D, **SPECIAL_1D[archetype]}, {**SHARED_2D, **SPECIAL_2D[archetype]}


def stack_1d(templates: Mapping[str, np.ndarray]) -> np.ndarray:
    """Conv1D kernel (taps, channels, filters): each template right-aligned in the longest one's taps."""
    taps = max(t.shape[0] for t in templates.values())
    channels = next(iter(templates.values())).shape[1]
    kernel = np.zeros((taps, channels, len(templates)))
    for i, template in enumerate(templates.values()):
        kernel[taps - template.shape[0] :, :, i] = template
    return kernel


def stack_2d(templates: Mapping[str, np.ndarray]) -> np.ndarray:
    """Conv2D kernel (rows, columns, 1, filters): each template centred in the largest one's size."""
    size = max(max(t.shape) for t in templates.values())
    kernel = np.zeros((size, size, 1, len(templates)))
    for i, template in enumerate(templates.values()):
        top, left = (size - template.shape[0]) // 2, (size - template.shape[1]) // 2
        kernel[top : top + template.shape[0], left : left + template.shape[1], 0, i] = template
    return kernel
