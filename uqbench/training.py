"""The one training loop every method uses.

Mini-batches are drawn from in-memory tensors with a seeded generator (no DataLoader for tensor data), the
optimiser and schedule come from `TrainConfig`, a non-finite loss stops the run with `NonFiniteLoss`, an
optional validation set gives early stopping with the best weights restored, and an optional `Checkpoint` saves
the whole training state every N epochs and resumes it bit-identically (`uqbench.checkpoints`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterator, Literal, Protocol, Sequence

import torch
from torch import Tensor, nn

from uqbench.checkpoints import Checkpoint, TrainingState
from uqbench.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Checked
from uqbench.errors import BadConfig, NonFiniteLoss


Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainConfig(Checked):
    """The training recipe: budget, optimiser and numeric precision. Tasks give their defaults
    (`Task.recipe`); any field can be set per run, per method or per task (see `uqbench.spec`).

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per optimiser step.
        lr: base learning rate.
        weight_decay: decoupled weight decay (AdamW/SGD), or L2 added to the gradient (Adam); the MAP prior on
            the backbone weights.
        optimizer: 'adamw', 'adam' or 'sgd' (SGD uses Nesterov momentum 0.9).
        adam_eps: epsilon of Adam and AdamW.
        schedule: 'constant' or 'cosine' (per-step cosine decay to 0 over the whole budget).
        grad_clip: maximum global gradient norm, or None for no clipping.
        patience: epochs without validation improvement before stopping (needs a validation set); None: off.
        precision: 'fp32', or mixed precision with 'bf16' / 'fp16' autocast around the loss (fp16 with loss
            scaling; CUDA only). Part of every run's key: a GPU changes where a run goes, not what it is.
        noise_lr: learning rate of a likelihood's noise parameters (a learned log noise std: `map`'s, SNGP's,
            VBLL's), never weight-decayed. Adam moves a parameter about one learning rate per step, and log sigma
            has to travel from 0 (sigma = the targets' std) to log(residual std / std), -3 on the small UCI sets:
            at lr 1e-3 the 1,200 steps of 400 epochs on yacht would leave sigma near its start. 1e-2 gets there in
            a few hundred steps and jitters sigma by about 1 % at the end.
    """

    epochs: Annotated[int, AT_LEAST_ONE] = 100
    batch_size: Annotated[int, AT_LEAST_ONE] = 64
    lr: Annotated[float, NON_NEGATIVE] = 1e-3
    weight_decay: Annotated[float, NON_NEGATIVE] = 1e-4
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    adam_eps: Annotated[float, POSITIVE] = 1e-8
    schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: Annotated[float | None, POSITIVE] = None
    patience: Annotated[int | None, AT_LEAST_ONE] = None
    precision: Precision = "fp32"
    noise_lr: Annotated[float, NON_NEGATIVE] = 1e-2


NOISE = "noise"  # a parameter group holding a likelihood's noise parameters: trained at `noise_lr`


class Progress(Protocol):
    """What the loop reports to; methods never print."""

    def start(self, description: str, total: int) -> None: ...
    def advance(self, loss: float) -> None: ...
    def stop(self) -> None: ...


class NullProgress:
    """Progress that shows nothing."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, loss: float) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class TrainResult:
    """What happened in one call of `fit_module`."""

    epochs_run: int
    final_loss: float
    best_val_loss: float | None = None
    history: list[float] = field(default_factory=list)  # mean training loss per epoch
    val_history: list[float] = field(default_factory=list)  # validation loss per epoch (when early stopping is on)


LossFn = Callable[..., Tensor]  # (*batch tensors) -> scalar loss
ValLossFn = Callable[..., Tensor]  # (*batch tensors) -> [B] per-example validation loss


def batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True) -> Iterator[Tensor]:
    """Index tensors covering range(n) once, in a random order drawn from `generator`."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)


class FlatAdam(torch.optim.Optimizer):
    """Adam (coupled weight decay) or AdamW (decoupled), the formula of `torch.optim.Adam`, on one flat buffer per
    parameter group: the group's parameters and gradients become views into two contiguous tensors, so a step is
    a handful of tensor operations whatever the number of parameter tensors. On a CPU, where a small network's
    step is mostly per-tensor overhead, that is about a quarter of the step (8-50-1 MLP, batch 128: 0.80 -> 0.58
    ms); torch's fused kernels are kept for CUDA.

    The gradients must stay those views: a step first checks each parameter's gradient is still its view (and
    copies it back in if something replaced it), and `zero_grad` zeroes the buffer instead of setting None.
    """

    def __init__(self, params, lr: float, eps: float, weight_decay: float, decoupled: bool):
        super().__init__(params, {"lr": lr, "betas": (0.9, 0.999), "eps": eps, "weight_decay": weight_decay})
        self.decoupled = decoupled
        self._flat = [self._flatten(group["params"]) for group in self.param_groups]

    @staticmethod
    def _flatten(params: list[nn.Parameter]) -> dict[str, Any]:
        n = sum(p.numel() for p in params)
        data = torch.empty(n, dtype=params[0].dtype, device=params[0].device)
        grad, offset, views = torch.zeros_like(data), 0, []
        for p in params:
            k = p.numel()
            data[offset : offset + k].copy_(p.detach().reshape(-1))
            p.data = data[offset : offset + k].view_as(p)
            p.grad = grad[offset : offset + k].view_as(p)
            views.append(p.grad)
            offset += k
        return {"data": data, "grad": grad, "views": views, "m": torch.zeros_like(data), "v": torch.zeros_like(data),
                "t": 0}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for flat in self._flat:
            flat["grad"].zero_()

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group, flat in zip(self.param_groups, self._flat):
            for p, view in zip(group["params"], flat["views"]):
                if p.grad is not view:  # something replaced the view (set it to None, say): take the values back
                    view.copy_(p.grad) if p.grad is not None else view.zero_()
                    p.grad = view
            flat["t"] += 1
            t, lr, (b1, b2), eps, wd = flat["t"], group["lr"], group["betas"], group["eps"], group["weight_decay"]
            data, grad, m, v = flat["data"], flat["grad"], flat["m"], flat["v"]
            if wd and self.decoupled:
                data.mul_(1 - lr * wd)
            elif wd:
                grad = grad.add(data, alpha=wd)
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = v.sqrt().div_((1 - b2**t) ** 0.5).add_(eps)
            data.addcdiv_(m, denom, value=-lr / (1 - b1**t))

    def state_dict(self) -> dict[str, Any]:
        """Every group's moment estimates (flat [P_g] copies), step count and hyperparameters (a schedule changes
        lr). As with torch's optimisers, the parameters themselves are not in it: they are the module's."""
        return {"flat": [{"m": f["m"].clone(), "v": f["v"].clone(), "t": f["t"]} for f in self._flat],
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` returned, into this optimiser's buffers; ValueError (nothing changed) when it
        is another optimiser's (other groups or sizes)."""
        flat, groups = state_dict["flat"], state_dict["param_groups"]
        if len(flat) != len(self._flat) or len(groups) != len(self.param_groups) or not all(
            isinstance(s[k], Tensor) and s[k].shape == f[k].shape and s[k].dtype == f[k].dtype
            for s, f in zip(flat, self._flat) for k in ("m", "v")
        ):
            raise ValueError("FlatAdam.load_state_dict: the state of another optimiser (other groups or sizes)")
        for s, f in zip(flat, self._flat):
            f["m"].copy_(s["m"])
            f["v"].copy_(s["v"])
            f["t"] = int(s["t"])
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})


def make_optimizer(params: list[dict] | list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Optimiser from the config; `params` may be parameter groups with their own weight_decay. A group marked
    `{NOISE: True}` (a likelihood's noise parameters) is trained at `cfg.noise_lr` unless it sets its own lr.
    Adam and AdamW run as `FlatAdam` on the CPU and as torch's fused kernels on a GPU."""
    params = [{"lr": cfg.noise_lr, **g} if isinstance(g, dict) and g.get(NOISE) else g for g in params]
    params = [g for g in params if not isinstance(g, dict) or len(g["params"])]
    first = params[0]["params"][0] if isinstance(params[0], dict) else params[0]
    if cfg.optimizer in ("adam", "adamw") and first.device.type == "cpu":
        return FlatAdam(params, cfg.lr, cfg.adam_eps, cfg.weight_decay, decoupled=cfg.optimizer == "adamw")
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)


def _schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        )
    return None


def fit_module(
    module: nn.Module,
    loss_fn: LossFn,
    data: tuple[Tensor, ...],
    cfg: TrainConfig,
    *,
    seed: int,
    params: list[dict] | None = None,
    val: tuple[Tensor, ...] | None = None,
    val_loss_fn: ValLossFn | None = None,
    batch_transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    description: str = "train",
    checkpoint: Checkpoint | None = None,
    generators: Sequence[torch.Generator] = (),
) -> TrainResult:
    """Minimise `loss_fn` over mini-batches of `data` for `cfg.epochs` epochs.

    Args:
        module: put in train mode during training and eval mode afterwards.
        loss_fn: called with the batch slices of every tensor in `data`; returns a scalar.
        data: tensors sharing their first dimension N (e.g. (x, y)); moved to the module's device.
        cfg: budget and optimiser.
        seed: seeds the batch order (and `batch_transform`'s generator).
        params: optimiser parameter groups (default: every parameter of `module` that requires grad).
        val, val_loss_fn: optional validation tensors and per-example loss for early stopping (`cfg.patience`).
        batch_transform: applied to the first tensor of each training batch (data augmentation).
        on_epoch_start: called with the 0-based epoch index before each epoch (also when resuming).
        progress: receives one `advance` per epoch.
        checkpoint: where the training state is saved every `checkpoint.every` epochs and at the end; a usable
            stored one is resumed (a finished one is loaded and nothing is trained). None: no checkpoints.
        generators: other generators `loss_fn` draws from, whose states a checkpoint must keep.

    Raises:
        NonFiniteLoss: the loss became NaN or infinite; message gives epoch and step.
    """
    device = next(module.parameters()).device
    data = tuple(t.to(device) for t in data)
    n = data[0].shape[0]
    generator = torch.Generator().manual_seed(seed)
    opt = make_optimizer(params if params is not None else [p for p in module.parameters() if p.requires_grad], cfg)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    sched = _schedule(opt, cfg, cfg.epochs * steps_per_epoch)
    autocast, scaler = mixed_precision(device, cfg.precision)
    progress = progress or NullProgress()
    state = TrainingState(module, opt, sched, scaler, [generator, *generators],
                          TrainResult(epochs_run=0, final_loss=float("nan")))
    what = {"cfg": dataclasses.asdict(cfg), "seed": seed, "description": description,
            "data": [list(t.shape) for t in data], "val": None if val is None else [list(t.shape) for t in val]}
    done = checkpoint is not None and checkpoint.resume(state, what)
    result = state.result
    progress.start(description, cfg.epochs)
    for loss in result.history:
        progress.advance(loss)
    try:
        for epoch in range(cfg.epochs if done else result.epochs_run, cfg.epochs):  # after the checkpoint's epochs
            if on_epoch_start is not None:
                on_epoch_start(epoch)
            module.train()
            total, count = 0.0, 0
            for step, idx in enumerate(batches(n, cfg.batch_size, generator)):
                idx = idx.to(device)
                batch = [t[idx] for t in data]
                if batch_transform is not None:
                    batch[0] = batch_transform(batch[0], generator)
                with autocast():
                    loss = loss_fn(*batch)
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"loss became {float(loss.detach())} at epoch {epoch + 1} step {step + 1}")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                if sched is not None:
                    sched.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            result.epochs_run = epoch + 1
            result.final_loss = total / count
            result.history.append(result.final_loss)
            progress.advance(result.final_loss)
            if val is not None and val_loss_fn is not None and cfg.patience is not None:
                current = evaluate_loss(module, val_loss_fn, val, cfg.batch_size)
                result.val_history.append(current)
                if result.best_val_loss is None or current < result.best_val_loss:
                    result.best_val_loss, state.bad_epochs = current, 0
                    state.best_state = copy.deepcopy(module.state_dict())
                else:
                    state.bad_epochs += 1
                    if state.bad_epochs >= cfg.patience:
                        break
            if checkpoint is not None and (epoch + 1) % checkpoint.every == 0 and epoch + 1 < cfg.epochs:
                checkpoint.write(state, done=False)
    finally:
        progress.stop()
    if checkpoint is not None and not done:
        checkpoint.write(state, done=True)
    if state.best_state is not None:
        module.load_state_dict(state.best_state)
    module.eval()
    return result


def mixed_precision(device: torch.device, precision: Precision) -> tuple[Callable[[], Any], torch.amp.GradScaler]:
    """(autocast context factory, gradient scaler) for training at `precision` on `device`.

    'fp32': no autocast. 'bf16': bf16 autocast (CPU or CUDA; bf16 has float32's exponent range, so no loss
    scaling). 'fp16': fp16 autocast with loss scaling against gradient underflow, CUDA only.

    Raises:
        BadConfig: 'fp16' off CUDA, or 'bf16' on a CUDA device without bf16 support.
    """
    off = torch.amp.GradScaler("cuda", enabled=False)
    if precision == "fp32":
        return contextlib.nullcontext, off
    if precision == "fp16" and device.type != "cuda":
        raise BadConfig(f"precision 'fp16' needs a CUDA device; this run is on {device.type} (use bf16 or fp32)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BadConfig("precision 'bf16' is not supported by this CUDA device; use fp16 or fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    return functools.partial(torch.autocast, device.type, dtype=dtype), scaler


@torch.no_grad()
def evaluate_loss(module: nn.Module, loss_fn: ValLossFn, data: tuple[Tensor, ...], batch_size: int) -> float:
    """Mean of a per-example loss over `data`, in eval mode (restores the previous mode)."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    losses = [
        loss_fn(*(t[i : i + batch_size].to(device) for t in data)) for i in range(0, data[0].shape[0], batch_size)
    ]
    module.train(was_training)
    return float(torch.cat([l.reshape(-1) for l in losses]).mean())


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with torch's global RNG seeded, restoring the previous RNG state afterwards.

    Parameter initialisation (nn.Linear etc.) draws from the global RNG; this makes it a function of `seed`.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with torch limited to `n` intra-op threads, restoring the count afterwards: for the few
    operations (LAPACK factorisations) whose result otherwise depends on the machine's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
