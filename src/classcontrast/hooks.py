"""Forward hooks that record tensors for one call and are removed when it ends."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from torch import Tensor, nn

from .errors import ClassContrastError


class OutputRecorder:
    """Records a module's output during a forward pass as a tensor autograd can differentiate to.

    The recorded tensor is kept out of reach of in-place operations downstream: the hook returns a
    clone to the rest of the network. If nothing before the layer needs gradients (parameters are
    frozen during a call), the recorded tensor becomes the start of the graph, so the backward pass
    stops at the layer.
    """

    def __init__(self, module: nn.Module | None, name: str, stack: ExitStack | None = None) -> None:
        self.name = name
        self.outputs: list[Tensor] = []
        if module is not None and stack is not None:
            stack.callback(module.register_forward_hook(self._hook).remove)

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise ClassContrastError(
                f"layer '{self.name}' returns {type(output).__name__}, not a tensor; choose another layer"
            )
        return self.capture(output)

    def capture(self, tensor: Tensor) -> Tensor:
        """Record ``tensor`` and return the clone the rest of the network should use."""
        if not tensor.requires_grad:
            tensor = tensor.detach().requires_grad_(True)
        self.outputs.append(tensor)
        return tensor.clone()

    def single(self) -> Tensor:
        """The one recorded output; a clear error if the layer did not run exactly once."""
        if len(self.outputs) != 1:
            raise ClassContrastError(
                f"layer '{self.name}' ran {len(self.outputs)} times in one forward pass; "
                "choose a module that runs exactly once (for example its parent block)"
            )
        return self.outputs[0]
