"""Which of a vision transformer's tokens are image patches, and where each patch lies.

Tokens are laid out as ``[extra tokens (CLS, registers), patches row-major]``. A token count
that is not ``1 + g*g`` is handled by :func:`token_layout`, which takes the smallest run of
leading extra tokens that leaves a patch grid of the image's aspect ratio.

What can go wrong: a model that puts its extra tokens after the patches, or orders patches
column-major, gets a layout that names the wrong patches; a token count that no grid fits
raises :class:`ValueError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn


@dataclass(frozen=True)
class TokenLayout:
    """Which tokens are image patches, and where each patch lies in the input.

    Attributes:
        n_tokens: tokens per sample ``T``.
        patch_start: index of the first patch token; tokens before it (CLS, registers) and
            after the grid are extra tokens.
        grid: ``(rows, cols)`` of the patch grid; patches are row-major.
        patch: ``(height, width)`` of one patch in pixels.
        image: ``(H, W)`` of the input.
    """

    n_tokens: int
    patch_start: int
    grid: tuple[int, int]
    patch: tuple[int, int]
    image: tuple[int, int]

    @property
    def n_patches(self) -> int:
        """Patch tokens ``P = rows * cols``."""
        return self.grid[0] * self.grid[1]

    @property
    def patches(self) -> slice:
        """The patch tokens' positions in the token axis."""
        return slice(self.patch_start, self.patch_start + self.n_patches)

    @property
    def has_cls(self) -> bool:
        """Token 0 is an extra token (taken to be CLS)."""
        return self.patch_start > 0

    def token_label(self, token: int) -> str:
        """A reader's name for a token: ``CLS``, ``register 2``, ``patch (row 1, col 3)``."""
        patch = self.patch_of(token)
        if patch is not None:
            return f"patch (row {patch[0]}, col {patch[1]})"
        if token == 0:
            return "CLS"
        extra = token if token < self.patch_start else token - self.n_patches
        return f"register {extra}"

    def token_labels(self) -> list[str]:
        """:meth:`token_label` of every token, in order."""
        return [self.token_label(t) for t in range(self.n_tokens)]

    def patch_token(self, row: int, col: int) -> int:
        """The token index of the patch at grid ``(row, col)``."""
        return self.patch_start + row * self.grid[1] + col

    def patch_of(self, token: int) -> tuple[int, int] | None:
        """Grid ``(row, col)`` of a patch token; ``None`` for an extra token."""
        if self.patch_start <= token < self.patch_start + self.n_patches:
            row, col = divmod(token - self.patch_start, self.grid[1])
            return row, col
        return None

    def patch_at(self, y: float, x: float) -> int | None:
        """The patch token under pixel ``(y, x)``; ``None`` outside the patch grid."""
        row, col = int(y + 0.5) // self.patch[0], int(x + 0.5) // self.patch[1]
        if 0 <= row < self.grid[0] and 0 <= col < self.grid[1]:
            return self.patch_token(row, col)
        return None

    def patch_centres(self) -> np.ndarray:
        """``[P, 2]`` pixel coordinates ``(y, x)`` of each patch's centre, row-major."""
        rows, cols = np.meshgrid(np.arange(self.grid[0]), np.arange(self.grid[1]), indexing="ij")
        centres = np.stack([(rows + 0.5) * self.patch[0], (cols + 0.5) * self.patch[1]], -1)
        return centres.reshape(-1, 2).astype(np.float64)

    def to_pixels(self, values: np.ndarray) -> np.ndarray:
        """Per-token values ``[..., T]`` -> per-pixel maps ``[..., H, W]`` of the patch tokens.

        Each patch's value fills its patch; pixels no patch covers are NaN.
        """
        grid = values[..., self.patches].reshape(*values.shape[:-1], *self.grid)
        ph, pw = self.patch
        up = np.repeat(np.repeat(grid, ph, axis=-2), pw, axis=-1).astype(np.float32)
        out = np.full((*values.shape[:-1], *self.image), np.nan, np.float32)
        h, w = min(up.shape[-2], self.image[0]), min(up.shape[-1], self.image[1])
        out[..., :h, :w] = up[..., :h, :w]
        return out


def token_layout(model: nn.Module, n_tokens: int, image: tuple[int, int]) -> TokenLayout:
    """Where the patches are among ``n_tokens`` tokens for an ``image = (H, W)`` input.

    The patch grid is the one with the image's aspect ratio left by the fewest leading extra
    tokens (CLS and any registers). The patch size is the model's (``patch`` or
    ``patch_size`` attribute) when it has one, else ``H // rows``.

    Raises:
        ValueError: no patch grid fits the token count.
    """
    h, w = image
    for start in range(n_tokens):
        n = n_tokens - start
        rows = round(math.sqrt(n * h / w))
        if rows > 0 and n % rows == 0 and (n // rows) * h == rows * w:
            size = getattr(model, "patch", None) or getattr(model, "patch_size", None)
            patch = (
                (int(size), int(size)) if isinstance(size, int) else (h // rows, w // (n // rows))
            )
            return TokenLayout(n_tokens, start, (rows, n // rows), patch, (h, w))
    raise ValueError(
        f"{n_tokens} tokens do not form a patch grid for a {h}x{w} input with extra tokens first."
    )
