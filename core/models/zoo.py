"""The model zoo: our own small hierarchical models and torchvision architectures by name.

Every builder adapts to the dataset's input shape ``(C, H, W)`` and class count. Module names
are what ``named_modules()`` gives, and every page refers to a layer by that name, so the
built-in models name their parts for a reader (``block2.conv1``, ``layer1.0.skip``,
``blocks.3.attn.attn_probs``). The built-in ones are registered in
:data:`BUILTIN_ARCHITECTURES`, each with the line a page shows beside it. Torchvision models
are ``tv:<name>`` (``tv:resnet18``, ``tv:vit_b_16``); their weights come from a local file
or, when online, torchvision's hub.

What can go wrong: a weights file for another architecture (:class:`WeightsMismatchError`
lists the missing, unexpected and mis-shaped keys), a pickle that would run code
(:class:`core.io.UnsafeFileError`), pretrained weights asked for offline
(:class:`WeightsUnavailableError`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch
from torch import nn

from core.files import load_state_dict

TORCHVISION_PREFIX = "tv:"


class WeightsMismatchError(ValueError):
    """A state dict that does not fit the architecture it is loaded into."""

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[str]):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched

        def head(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" … (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = [
            f"{len(keys)} {what}: {head(keys)}"
            for what, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("keys of the wrong shape", mismatched),
            )
            if keys
        ]
        super().__init__("The weights do not fit this architecture. " + "; ".join(parts) + ".")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights that could not be had (offline, or none exist)."""


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(c_in, c_out, 3, padding=1),
            bn1=nn.BatchNorm2d(c_out),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(c_out, c_out, 3, padding=1),
            bn2=nn.BatchNorm2d(c_out),
            relu2=nn.ReLU(),
            pool=nn.MaxPool2d(2),
        )
    )


def _classifier(width: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(width, num_classes)
        )
    )


class TinyCNN(nn.Module):
    """A TinyVGG-style stack: three blocks of two 3x3 convs (BatchNorm, ReLU) and a 2x2 max-pool.

    Input ``[N, C, H, W]``; outputs logits ``[N, num_classes]``. Resolution halves per block.
    """

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        channels = (in_channels, *widths)
        for i, (c_in, c_out) in enumerate(pairwise(channels), start=1):
            self.add_module(f"block{i}", _conv_block(c_in, c_out))
        self.head = _classifier(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


class MLP(nn.Module):
    """A fully connected network: flatten, hidden layers with ReLU, a linear head."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 128)):
        super().__init__()
        self.flatten = nn.Flatten()
        widths = (in_features, *hidden)
        for i, (a, b) in enumerate(pairwise(widths), start=1):
            self.add_module(f"fc{i}", nn.Linear(a, b))
            self.add_module(f"relu{i}", nn.ReLU())
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


class Add(nn.Module):
    """``a + b`` as a module, so a residual sum is a named, hookable layer."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class ResidualBlock(nn.Module):
    """Two 3x3 convs plus a skip path: ``relu2(add(bn2(conv2(...)), skip(x)))``."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride == 1 and c_in == c_out:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(c_out),
                )
            )
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(self.add(out, self.skip(x)))


class SmallResNet(nn.Module):
    """A small ResNet: a stem, three stages of two residual blocks, global pooling, a head."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(widths[0]),
                relu=nn.ReLU(),
            )
        )
        c_in = widths[0]
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            stage = nn.Sequential(
                ResidualBlock(c_in, width, stride), ResidualBlock(width, width, 1)
            )
            self.add_module(f"layer{i}", stage)
            c_in = width
        self.head = _classifier(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


class SelfAttention(nn.Module):
    """Multi-head self-attention whose probabilities ``[N, heads, T, T]`` pass ``attn_probs``.

    ``attn_probs`` is an identity module, so an ordinary forward hook on it sees the attention.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_probs = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = self.attn_probs((q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(dim, dim * mlp_ratio),
                act=nn.GELU(),
                fc2=nn.Linear(dim * mlp_ratio, dim),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def conv_stem(c_in: int, dim: int, patch: int) -> nn.Sequential:
    """A convolutional stem (Xiao et al. 2021) that turns an image into ``patch``-pixel tokens.

    A stride-2 3x3 conv (BatchNorm, ReLU) for each factor 2 of ``patch``, widths rising to
    ``dim // 2``, a 3x3 ``mix`` conv at the token resolution, then a ``proj`` conv to ``dim``
    whose kernel and stride take the rest of ``patch``; output ``[N, dim, H / patch, W / patch]``,
    like a patch embedding's.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    rest, i, c = patch, 0, c_in
    while rest % 2 == 0:
        i, rest = i + 1, rest // 2
        width = max(8, dim // 2 ** (patch.bit_length() - i))
        layers[f"conv{i}"] = nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False)
        layers[f"bn{i}"] = nn.BatchNorm2d(width)
        layers[f"relu{i}"] = nn.ReLU()
        c = width
    if i:
        layers["mix"] = nn.Conv2d(c, dim, 3, padding=1, bias=False)
        layers["bn_mix"] = nn.BatchNorm2d(dim)
        layers["relu_mix"] = nn.ReLU()
        c = dim
    layers["proj"] = nn.Conv2d(c, dim, rest, stride=rest)
    return nn.Sequential(layers)


class SmallViT(nn.Module):
    """A small vision transformer: patch embedding, CLS token, learned positions, blocks, head.

    Tokens are ``[CLS, patch_0, ..., patch_{g*g-1}]`` with patches in row-major order over a
    ``g x g`` grid. Each block outputs ``[N, 1 + g*g, dim]``. ``stem="conv"`` embeds patches
    with :func:`conv_stem` instead of one linear patch projection: the same tokens, learnt far
    faster on small data.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        dim: int = 48,
        depth: int = 4,
        heads: int = 4,
        patch: int | None = None,
        stem: str = "patch",
    ):
        super().__init__()
        c, h, _ = input_shape
        self.patch = patch or max(1, h // 8)
        self.grid = h // self.patch
        if stem == "conv":
            self.patch_embed: nn.Module = conv_stem(c, dim, self.patch)
        else:
            self.patch_embed = nn.Conv2d(c, dim, self.patch, stride=self.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.grid**2, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = self.blocks(torch.cat([cls, tokens], dim=1) + self.pos_embed)
        return self.head(self.norm(x)[:, 0])


@dataclass(frozen=True)
class Architecture:
    """One built-in architecture: what it is, for a person, and how to build it.

    Attributes:
        description: one line a page shows beside the name.
        build: ``build((C, H, W), num_classes)``, a fresh model with random weights.
    """

    description: str
    build: Callable[[tuple[int, int, int], int], nn.Module]


BUILTIN_ARCHITECTURES: dict[str, Architecture] = {
    "cnn": Architecture(
        "TinyVGG-style conv net: three blocks of conv–BN–ReLU ×2 and max-pool",
        lambda shape, k: TinyCNN(shape[0], k),
    ),
    "mlp": Architecture(
        "fully connected: flatten, two hidden layers",
        lambda shape, k: MLP(shape[0] * shape[1] * shape[2], k),
    ),
    "resnet": Architecture(
        "small ResNet: three stages of residual blocks with named skip connections",
        lambda shape, k: SmallResNet(shape[0], k),
    ),
    "vit": Architecture(
        "small vision transformer: 4 blocks × 4 heads over image patches",
        lambda shape, k: SmallViT(shape, k),
    ),
    "vit-conv": Architecture(
        "vision transformer with a convolutional stem: 8×8 tokens of width 64, 4 blocks × 4 heads",
        lambda shape, k: SmallViT(shape, k, dim=64, depth=4, stem="conv"),
    ),
}
"""The registry of our own architectures, by the name a run's config gives."""


def describe(arch: str) -> str:
    """One line about ``arch`` for a person (a torchvision name says where it comes from)."""
    if arch in BUILTIN_ARCHITECTURES:
        return BUILTIN_ARCHITECTURES[arch].description
    return f"torchvision's {arch.removeprefix(TORCHVISION_PREFIX)}"


def torchvision_architectures() -> list[str]:
    """Names of torchvision's classification architectures, as ``tv:<name>``."""
    import torchvision  # here: it pulls in torch._dynamo, seconds that the built-in models skip

    names = torchvision.models.list_models(module=torchvision.models)
    return [TORCHVISION_PREFIX + n for n in sorted(names)]


def _build_torchvision(
    name: str, input_shape: tuple[int, int, int], num_classes: int, pretrained: bool
) -> nn.Module:
    import torchvision

    kwargs: dict[str, object] = {}
    if name.startswith(("vit_", "swin_")) and not pretrained:
        kwargs["image_size"] = input_shape[1]
    if not pretrained:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    try:
        return torchvision.models.get_model(name, weights="DEFAULT")
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise WeightsUnavailableError(
            f"Could not download torchvision's pretrained weights for {name} ({err}). "
            "Offline, save the weights on a machine with internet access and load them as a "
            "local .safetensors or .pth file."
        ) from err


def build_model(
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    weights: str | Path | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """Builds an architecture for inputs ``[N, *input_shape]`` and ``num_classes`` logits.

    Args:
        arch: one of :data:`BUILTIN_ARCHITECTURES` or ``tv:<torchvision name>``.
        input_shape: ``(C, H, W)`` of one input. Torchvision models expect ``C == 3``.
        num_classes: width of the logits.
        weights: optional local ``.safetensors``/``.pt``/``.pth`` state dict to load.
        pretrained: torchvision's own pretrained weights (needs internet; 1000 classes).

    Returns:
        The model in eval mode, on the CPU.
    """
    if arch in BUILTIN_ARCHITECTURES:
        model = BUILTIN_ARCHITECTURES[arch].build(input_shape, num_classes)
    elif arch.startswith(TORCHVISION_PREFIX):
        name = arch.removeprefix(TORCHVISION_PREFIX)
        if arch not in torchvision_architectures():
            raise ValueError(f"torchvision has no classification model named {name!r}.")
        model = _build_torchvision(name, input_shape, num_classes, pretrained)
    else:
        known = ", ".join(BUILTIN_ARCHITECTURES)
        raise ValueError(f"Unknown architecture {arch!r}: use one of {known} or tv:<name>.")
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def load_weights(model: nn.Module, weights: str | Path | dict[str, torch.Tensor]) -> nn.Module:
    """Loads a state dict (or a file of one) into ``model``, strictly.

    Raises:
        WeightsMismatchError: keys missing, unexpected, or of the wrong shape.
        core.io.UnsafeFileError: the file is not plain tensors.
    """
    state = weights if isinstance(weights, dict) else load_state_dict(weights)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in set(own) & set(state)
        if own[k].shape != state[k].shape
    )
    if missing or unexpected or mismatched:
        raise WeightsMismatchError(missing, unexpected, mismatched)
    model.load_state_dict(state)
    return model
