"""Configuration of a model and its training recipe.

The config is plain data (dataclasses of str/int/float/list) so that it serialises to the
checkpoint's ``config.json`` and rebuilds the exact same network on load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from model.kinds import kind_spec

Kind = Literal["dae", "vae", "photo"]  # the names of ``model.kinds.KINDS``
Likelihood = Literal["bernoulli", "gaussian", "gaussian-learned", "mse"]
NoiseKind = Literal["none", "gaussian", "salt-pepper", "mask"]


@dataclass
class NoiseConfig:
    """How training inputs are corrupted. ``sigma_min == sigma_max`` is a fixed level.

    Gaussian sigmas are on the model's value scale ([0, 1]); for salt-and-pepper and masking the
    same range gives the fraction of pixels hit, drawn per sample.
    """

    kind: NoiseKind = "none"
    sigma_min: float = 0.0
    sigma_max: float = 0.0
    clip: bool = True
    # gaussian: this fraction of every batch is clipped to [0, 1] and rounded to 8 bits, the noise
    # users' photos carry (the rest follows ``clip``)
    eight_bit_fraction: float = 0.0


@dataclass
class ModelConfig:
    """Architecture. Every shape derives from ``image_size``, ``channels`` and ``latent_dim``."""

    kind: Kind = "dae"
    image_size: list[int] = field(default_factory=lambda: [28, 28])  # [height, width]; photo: patch
    channels: int = 1
    hidden: list[int] = field(default_factory=lambda: [32, 64])
    extra_convs: int = 0  # 3x3 convs added to each stage of encoder and decoder
    latent_dim: int = 32
    likelihood: Likelihood = "mse"
    sigma: float = 0.1  # fixed decoder std for the gaussian likelihood (initial value if learned)
    depth: int = 17  # photo denoiser: number of conv layers
    value_range: list[float] = field(default_factory=lambda: [0.0, 1.0])

    def __post_init__(self) -> None:
        """Refuse, naming the field, a config that cannot build a network (a hand-edited or
        damaged config.json), before torch meets it."""
        _integer_list("image_size", self.image_size, least=1, count=2)
        _integer_list("hidden", self.hidden, least=1)
        for name, least in (("channels", 1), ("extra_convs", 0), ("latent_dim", 1), ("depth", 1)):
            if not _integer(getattr(self, name), least):
                raise ValueError(f"{name} must be an integer of at least {least}, "
                                 f"got {getattr(self, name)!r}")
        if not (_number(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be a number above 0, got {self.sigma!r}")
        if not (isinstance(self.value_range, list) and len(self.value_range) == 2
                and all(_number(v) for v in self.value_range)
                and self.value_range[0] < self.value_range[1]):
            raise ValueError(f"value_range must be [low, high] with low < high, got {self.value_range!r}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size[0], self.image_size[1])

    @property
    def has_latent(self) -> bool:
        return kind_spec(self.kind).has_latent


@dataclass
class TrainConfig:
    """A complete training recipe; presets fill it and command-line flags override parts."""

    preset: str = ""
    dataset: Literal["mnist", "folder"] = "mnist"
    epochs: int = 10
    max_steps: int = 0  # 0: no limit
    batch_size: int = 128
    lr: float = 1e-3
    lr_min: float = 1e-5  # cosine decay floor
    lr_warmup_steps: int = 200  # linear learning-rate warm-up before the cosine decay
    weight_decay: float = 0.0
    beta: float = 1.0  # VAE KL weight
    kl_warmup_steps: int = 0
    val_fraction: float = 0.1
    seed: int = 0
    binarize: bool = False  # dynamic binarisation (Bernoulli VAE)
    patches_per_epoch: int = 0  # photo: patches drawn per epoch
    # photo: > 0 weighs each patch's MSE by 1 / (sigma + this) (0-1 scale), so that low noise levels
    # count about as much as high ones in PSNR terms; 0: plain MSE
    sigma_weight_floor: float = 0.0
    # photo, colour models: this fraction of the patches is made gray (three equal planes) with the
    # same noise in each plane, as a gray photo reaches a colour model
    gray_fraction: float = 0.0
    # photo: this fraction of the patches is shown its true sigma, the rest none (blind), so that one
    # set of weights serves both uses
    known_fraction: float = 0.25
    grad_clip: float = 0.0
    amp: bool = True  # mixed precision (bf16/fp16 autocast) when training on CUDA
    num_workers: int = 0


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict_recipe: bool = True) -> RunConfig:
        """The config from its dict. An unknown field of ``model`` is always refused: it could change
        the network. With ``strict_recipe=False`` unknown ``noise`` and ``train`` fields (a recipe
        field added by a newer ``model.train``) are left out, since they do not change the network
        that loads; training passes the default, refusing them, since it would train otherwise."""
        return cls(
            model=_build(ModelConfig, data.get("model", {})),
            noise=_build(NoiseConfig, data.get("noise", {}), strict_recipe),
            train=_build(TrainConfig, data.get("train", {}), strict_recipe),
        )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _integer_list(name: str, values: object, least: int, count: int | None = None) -> None:
    """A ``ValueError`` naming ``name`` unless ``values`` is a non-empty list of integers of at
    least ``least`` (exactly ``count`` of them when given)."""
    if not (isinstance(values, list) and values and (count is None or len(values) == count)
            and all(_integer(v, least) for v in values)):
        size = f"{count} " if count else ""
        raise ValueError(f"{name} must be a list of {size}integers of at least {least}, got {values!r}")


# fields that config.json files and training states written before their removal still carry, left
# out on reading: they changed nothing (``train.patch_size``: the photo patch is ``model.image_size``)
RETIRED: dict[type, frozenset[str]] = {TrainConfig: frozenset({"patch_size"})}


def _build(cls: Any, data: dict[str, Any], strict: bool = True) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be an object, got {type(data).__name__}")
    data = {key: value for key, value in data.items() if key not in RETIRED.get(cls, frozenset())}
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown and strict:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**{key: value for key, value in data.items() if key in known})
