"""Degradation settings: random recipes (spec §6.1), the presets of §6.2, and fixed forms."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from cp3rt import defaults as D
from cp3rt.errors import ConfigError

DS_MAX = 7                  # §6.2 CLI default ds_max
DIAMETER = 30.0             # §6.1: diams default; sigma scales with diameter / 30
DOWNSAMPLE_GBLUR = 5.0      # §6.2 `downsample` preset: anti-alias blur rule reused by FixedNoise
# cp3rt's limits (the reference has none; a blur kernel has ~4 sigma taps, so --sigma 1e6 or
# --diameter 1e9 never finished). A blur wider than the largest image cp3rt segments in one piece
# (4096 px a side) leaves one bump of the whole image, nothing to restore.
MAX_SIGMA = float(D.HUGE_IMAGE_SIDE)
# Photons per unit intensity: above 1e6 the Poisson noise (1/sqrt(pscale) < 0.1 % of the
# signal) is invisible in float32 images, and counts of bright pixels leave float32's exact
# integers (2**24); the presets draw means of 5.7 to 133.
MAX_PSCALE = 1e6


def _prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} is {value}; a probability must lie in [0, 1].")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} is {value}; it must be finite and > 0.")


def _sigma_ok(name: str, value: float) -> bool:
    return math.isfinite(value) and 0 <= value <= MAX_SIGMA


@dataclass(frozen=True)
class NoiseParams:
    """One random degradation recipe, the arguments of the reference ``add_noise`` (§6.1).

    Probabilities are per image. ``beta`` is the Gamma *rate* of the photon scale; ``gblur``
    scales the blur sigma; ``iso=False`` is the anisotropic recipe (rows only).
    """

    poisson: float = 0.7
    blur: float = 0.7
    downsample: float = 0.7
    alpha: float = 4.0
    beta: float = 0.7
    gblur: float = 1.0
    ds_max: int = DS_MAX
    iso: bool = True
    uniform_blur: bool = False

    def __post_init__(self) -> None:
        for name in ("poisson", "blur", "downsample"):
            _prob(name, getattr(self, name))
        _positive("alpha", self.alpha)
        _positive("beta", self.beta)
        if not (math.isfinite(self.gblur) and self.gblur >= 0):
            raise ConfigError(f"gblur is {self.gblur}; it must be finite and >= 0.")
        if self.gblur == 0 and (self.blur > 0 or self.downsample > 0):
            raise ConfigError(
                f"gblur is 0 but blur={self.blur}, downsample={self.downsample}; gblur must be "
                "> 0 whenever images can be blurred."
            )
        if int(self.ds_max) != self.ds_max or self.ds_max < 2:
            raise ConfigError(f"ds_max is {self.ds_max}; it must be an integer >= 2.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "random", **{k: getattr(self, k) for k in self.__dataclass_fields__}}


def _default_oneclick() -> tuple[NoiseParams, ...]:
    # §6.2 `all`: denoise / deblur / upsample recipes, one sub-batch each.
    return (
        NoiseParams(poisson=0.8, blur=0.0, downsample=0.0, beta=0.7, gblur=0.0, uniform_blur=True),
        NoiseParams(poisson=0.8, blur=0.8, downsample=0.0, beta=0.1, gblur=10.0, uniform_blur=True),
        NoiseParams(poisson=0.8, blur=0.8, downsample=0.8, beta=0.03, gblur=5.0, uniform_blur=True),
    )


@dataclass(frozen=True)
class OneClickNoise:
    """The `all`/oneclick preset: the batch is split into one sub-batch per recipe, in a random
    order of recipes (so a single image gets one recipe chosen at random)."""

    sets: tuple[NoiseParams, ...] = field(default_factory=_default_oneclick)

    def __post_init__(self) -> None:
        if not self.sets or not all(isinstance(s, NoiseParams) for s in self.sets):
            raise ConfigError("sets must be a non-empty tuple of NoiseParams.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "oneclick", "sets": [s.to_dict() for s in self.sets]}


@dataclass(frozen=True)
class FixedNoise:
    """Fixed parameters for benchmarks: every image gets the same degradation.

    ``sigma``: blur sigma in pixels, a number (isotropic) or ``(sigma_y, sigma_x)``; 0 = no blur;
    None = no blur, except when ``ds > 1``, where the `downsample` preset's anti-alias rule
    ``(diameter/30) * (1 + (gblur-1) * ds / (2*gblur))`` with gblur 5 is used, because the
    reference always blurs downsampled images. ``ds``: keep every ds-th row (and column if
    ``iso``) and resize back. ``pscale``: photons per unit intensity; None = no Poisson noise.
    """

    pscale: float | None = None
    sigma: float | tuple[float, float] | None = None
    ds: int = 1
    iso: bool = True

    def __post_init__(self) -> None:
        if self.pscale is not None:
            _positive("pscale", self.pscale)
            if self.pscale > MAX_PSCALE:
                raise ConfigError(
                    f"pscale is {self.pscale:g}; allowed: > 0 and <= {MAX_PSCALE:g} photons per "
                    "unit intensity (above that the noise is invisible; omit --pscale for none)."
                )
        if self.sigma is not None:
            sig = self.sigma if isinstance(self.sigma, tuple) else (self.sigma, self.sigma)
            if len(sig) != 2 or not all(_sigma_ok("sigma", s) for s in sig):
                raise ConfigError(
                    f"sigma is {self.sigma}; allowed: 0 to {MAX_SIGMA:g} px, as one number or "
                    "(sigma_y, sigma_x)."
                )
        if int(self.ds) != self.ds or self.ds < 1:
            raise ConfigError(f"ds is {self.ds}; the downsampling factor must be an integer >= 1.")

    def sigmas(self, diameter: float) -> tuple[float, float]:
        """(sigma_y, sigma_x) in pixels for an image whose objects have ``diameter`` pixels."""
        if self.sigma is None:
            if self.ds == 1:
                return 0.0, 0.0
            g = DOWNSAMPLE_GBLUR
            s = diameter / DIAMETER * (1 + (g - 1) * self.ds / (2 * g))
            return (s, s) if self.iso else (s, s / 10)
        if isinstance(self.sigma, tuple):
            return float(self.sigma[0]), float(self.sigma[1])
        return float(self.sigma), float(self.sigma)

    def to_dict(self) -> dict[str, Any]:
        sigma = list(self.sigma) if isinstance(self.sigma, tuple) else self.sigma
        return {"kind": "fixed", "pscale": self.pscale, "sigma": sigma, "ds": self.ds,
                "iso": self.iso}


Noise = NoiseParams | OneClickNoise | FixedNoise

PRESET_NAMES = ("poisson", "blur", "downsample", "oneclick", "all", "aniso",
                "blur_expr", "downsample_expr")


def noise_preset(name: str, ds_max: int = DS_MAX) -> NoiseParams | OneClickNoise:
    """The §6.2 training presets by name (`all` is an alias of `oneclick`)."""
    if name == "poisson":
        return NoiseParams(poisson=0.8, blur=0.0, downsample=0.0, beta=0.7, gblur=1.0,
                           ds_max=ds_max)
    if name == "blur":
        return NoiseParams(poisson=0.8, blur=0.8, downsample=0.0, beta=0.1, gblur=10.0,
                           uniform_blur=True, ds_max=ds_max)
    if name == "downsample":
        return NoiseParams(poisson=0.8, blur=0.8, downsample=0.8, beta=0.03, gblur=5.0,
                           uniform_blur=True, ds_max=ds_max)
    if name in ("oneclick", "all"):
        return OneClickNoise(tuple(replace(s, ds_max=ds_max) for s in _default_oneclick()))
    if name == "aniso":
        return NoiseParams(poisson=0.8, blur=0.8, downsample=0.8, beta=0.1, gblur=1.5 * ds_max,
                           iso=False, ds_max=ds_max)
    if name == "blur_expr":
        return NoiseParams(poisson=0.8, blur=0.8, downsample=0.0, beta=0.1, gblur=0.5,
                           ds_max=ds_max)
    if name == "downsample_expr":
        return NoiseParams(poisson=0.8, blur=0.8, downsample=0.8, beta=0.03, gblur=1.0,
                           ds_max=ds_max)
    raise ConfigError(f"noise is {name!r}; allowed presets: {', '.join(PRESET_NAMES)}.")


CLI_NOISE_NAMES = ("poisson", "blur", "downsample", "oneclick", "aniso")


def noise_from_options(
    name: str,
    pscale: float | None = None,
    sigma: float | None = None,
    ds: int | None = None,
    ds_max: int = DS_MAX,
) -> Noise:
    """Turn ``cp3rt degrade`` options into a recipe.

    Without pscale/sigma/ds: the random §6.2 preset ``name``. With any of them: a FixedNoise of
    exactly those degradations, which must fit ``name``: `poisson` needs pscale only, `blur`
    needs sigma (pscale optional), `downsample`/`aniso` need ds (sigma, pscale optional;
    `aniso` subsamples rows only), `oneclick` takes none.
    """
    if name not in CLI_NOISE_NAMES:
        raise ConfigError(f"noise is {name!r}; allowed: {', '.join(CLI_NOISE_NAMES)}.")
    given = {k for k, v in (("pscale", pscale), ("sigma", sigma), ("ds", ds)) if v is not None}
    if not given:
        return noise_preset(name, ds_max=ds_max)
    allowed = {"poisson": {"pscale"}, "blur": {"sigma", "pscale"}, "oneclick": set(),
               "downsample": {"ds", "sigma", "pscale"}, "aniso": {"ds", "sigma", "pscale"}}[name]
    required = {"poisson": "pscale", "blur": "sigma", "downsample": "ds", "aniso": "ds"}.get(name)
    extra = sorted(given - allowed)
    if extra:
        raise ConfigError(
            f"{', '.join(extra)} cannot be fixed for noise {name!r}; it accepts "
            f"{', '.join(sorted(allowed)) or 'no fixed parameters'}."
        )
    if required not in given:
        raise ConfigError(f"noise {name!r} with fixed parameters needs {required} to be given.")
    return FixedNoise(pscale=pscale, sigma=sigma, ds=1 if ds is None else ds,
                      iso=name != "aniso")


def max_sigma(noise: Noise, diameter: float) -> float:
    """The largest blur sigma (px) ``noise`` can give an image whose objects have ``diameter``
    pixels (the random recipes scale sigma with diameter / 30; see ``synth._draw``)."""
    if isinstance(noise, FixedNoise):
        return max(noise.sigmas(diameter))
    if isinstance(noise, OneClickNoise):
        return max(max_sigma(s, diameter) for s in noise.sets)
    if noise.blur == 0 and noise.downsample == 0:
        return 0.0
    scale, g = diameter / DIAMETER, noise.gblur
    if noise.uniform_blur and noise.iso:
        r_max = max(1.0, noise.ds_max / (2.0 * g)) if noise.downsample > 0 else 1.0
        return scale * max(1.0, 1.0 + (g - 1.0) * r_max)
    if not noise.iso:
        return scale * g * 1.5
    return scale * 5.0 * g


def check_run(noise: Noise, *, seed: int, diameter: float) -> None:
    """What ``degrade_files`` checks before the first image: the seed, the diameter, and the
    largest blur the recipe can give at that diameter (ConfigError naming the option)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} is not allowed; allowed: an integer >= 0 (--seed).")
    if not (isinstance(diameter, (int, float)) and math.isfinite(diameter) and diameter > 0):
        raise ConfigError(f"diameter={diameter!r} is not allowed; allowed: a number of pixels "
                          "> 0 (--diameter).")
    top = max_sigma(noise, float(diameter))
    if top > MAX_SIGMA:
        raise ConfigError(
            f"diameter={diameter:g} would blur with sigma up to {top:.3g} px, over the limit of "
            f"{MAX_SIGMA:g} px (the random blur scales with diameter / 30, and with the "
            "downsampling factor); give the objects' diameter in pixels of these images "
            "(--diameter), or a smaller --ds / --ds-max."
        )
