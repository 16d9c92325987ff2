"""Forward hooks that record tensors for one call, in the calling thread only, and are removed when it ends."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import Any

from torch import Tensor, nn

from .errors import ClassContrastError


class OutputRecorder:
    """Records a module's output (or input) during a forward pass as a tensor autograd can differentiate to.

    The recorded tensor is kept out of reach of in-place operations downstream: the hook returns a
    clone to the rest of the network. If nothing before the layer needs gradients (parameters are
    frozen during a call), the recorded tensor becomes the start of the graph, so the backward pass
    stops at the layer.

    Hooks act only in the thread that created the recorder: a forward pass of the same model in
    another thread (a plain prediction, say) neither feeds this recorder nor sees a changed output.
    """

    def __init__(self, module: nn.Module | None, name: str, stack: ExitStack | None = None) -> None:
        self.name = name
        self.outputs: list[Tensor] = []
        self.owner = threading.get_ident()
        if module is not None and stack is not None:
            self.attach(module, stack)

    def mine(self) -> bool:
        """Whether the current thread is the one this recorder serves."""
        return threading.get_ident() == self.owner

    def attach(self, module: nn.Module, stack: ExitStack, before: bool = False) -> None:
        """Record ``module``'s output (or, with ``before``, its first input) until ``stack`` closes."""
        handle = module.register_forward_pre_hook(self._pre_hook) if before \
            else module.register_forward_hook(self._hook)
        stack.callback(handle.remove)

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if not self.mine():
            return None
        if isinstance(output, tuple) and output and isinstance(output[0], Tensor):  # e.g. (hidden states, ...)
            return (self.capture(output[0]), *output[1:])
        if not isinstance(output, Tensor):
            raise ClassContrastError(
                f"layer '{self.name}' returns {type(output).__name__}, not a tensor; choose another layer"
            )
        return self.capture(output)

    def _pre_hook(self, module: nn.Module, inputs: Any) -> tuple[Any, ...] | None:
        if not self.mine():
            return None
        return (self.capture(inputs[0]), *inputs[1:])

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
                f"layer '{self.name}' ran {len(self.outputs)} times in one forward pass (a shared or recurrent "
                "block?); choose a module that runs exactly once (for example its parent block)"
            )
        return self.outputs[0]
