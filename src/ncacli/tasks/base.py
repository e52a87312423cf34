"""The task interface every task implements (the built-ins through the same door as a plugin)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ncacli.errors import NcaError, UsageError

if TYPE_CHECKING:
    from ncacli.config import Config
    from ncacli.spec import ModelSpec


@dataclass
class Batch:
    """One iteration's samples: pool rows (None without a pool), states, and per-sample labels (a class, a
    data index; None when the task has none)."""

    index: torch.Tensor | None
    states: torch.Tensor
    labels: torch.Tensor | None = None


# flags of the options a verb passes to a task's showing facet
FLAGS = {
    "condition": "--condition",
    "condition_map": "--condition-map",
    "switch_at": "--switch-at",
    "condition_to": "--condition-to",
    "condition_video": "--condition-video",
    "input": "--input",
    "input_to": "--input-to",
    "frames": "--frames",
    "guidance": "--guidance",
    "mask": "--mask",
}


@dataclass
class Asked:
    """What a verb's options ask of a model beyond its steps, each None where not given: the condition of a
    growing model (a class, a map of classes, a switch, a video of maps), the input of a model that reads one,
    the frames of a model that predicts them, the scale of classifier-free guidance, the hole an inpainting
    model fills. ``growth``: the flags given that shape a growth (``--damage-at``, ``--from``, ``--grid``), for a
    task that shows something other than a growth to refuse; ``model``: the model as the user named it, for
    messages."""

    condition: str | None = None
    condition_map: str | None = None
    switch_at: int | None = None
    condition_to: str | None = None
    condition_video: str | None = None
    input: str | None = None
    input_to: str | None = None
    frames: int | None = None
    growth: tuple[str, ...] = ()
    model: str = "the model"
    guidance: float | None = None
    mask: str | None = None

    def given(self, *names: str) -> list[str]:
        """The flags given among the fields ``names`` (default: all of them)."""
        return [FLAGS[n] for n in names or FLAGS if getattr(self, n) is not None]

    def only(self, reads: tuple[str, ...], why: str, task: str) -> None:
        """Refuse, in one line, the first option given among those the task does not read (``reads``: the
        fields it does); ``why`` says what its models take instead, ``task`` is its name."""
        for flag in self.given(*(n for n in FLAGS if n not in reads)):
            if flag == "--frames":
                raise UsageError(f"--frames counts the frames a video model predicts; {self.model} is a {task} model")
            if flag == "--guidance":
                raise UsageError(f"--guidance scales classifier-free guidance; {self.model} (task {task!r}) was "
                                 "trained without it")  # fmt: skip
            raise UsageError(f"{flag}: {why}")


@dataclass
class Schedule:
    """The condition of each step of a growth a verb shows: None, one tensor ``(1, K, H|1, W|1)``, or a function
    ``step → tensor`` (steps from 1); ``about``: what it is, for the verb's summary; ``start``: the state
    ``(1, C, H, W)`` the growth starts from where the verb's options name it (a picture to inpaint), else None
    (the seed, or ``--from``); ``runner``: given the NCA, what runs the growth in its place with its ``rollout``
    signature (classifier-free guidance's pair of rollouts, :class:`ncacli.engine.guidance.Guided`), else None."""

    condition: Any = None
    about: dict[str, Any] = field(default_factory=dict)
    start: Any = None
    runner: Any = None


class _Bound:
    """What every facet of a task may read: the model's spec, the task's tensors and their device."""

    name: ClassVar[str]
    spec: ModelSpec
    tensors: dict[str, torch.Tensor]
    device: torch.device


class Training(_Bound):
    """The training facet: what ``nca train`` asks of a task (the NCA trainer, the session, the run directory)."""

    # options of ``nca train`` that this task alone reads: given without ``--task``, they name it
    train_options: ClassVar[tuple[str, ...]] = ()

    # objectives that name this task when a config names none: the first task, in the registry's order, one of
    # whose objectives is in ``loss`` (else the config's default task)
    implied_by: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def preset_for(cls, data: str | None = None) -> str | None:
        """The preset a run of this task starts from when none is named (``data``: ``--data``); by default the
        preset of the task's own name, where there is one."""
        from ncacli.config import list_presets

        return cls.name if cls.name in list_presets() else None

    @classmethod
    def reads_data(cls, data: str) -> bool:
        """Whether ``nca train --data DATA`` without ``--task`` means this task: a data set it names, or a folder
        it reads (the first task, in the registry's order, that says so)."""
        return False

    trains_with: tuple[str, ...] | None = None  # the objectives it trains with (None: any the loss names)

    @staticmethod
    def check_config(config: Config) -> None:
        """Refuse a config the task cannot train (its ``task_options`` are already checked against ``Options``)."""

    @classmethod
    def from_config(cls, config: Config, device: Any) -> Task:
        """Build the task for a training run: load what it learns from and write the model spec."""
        raise NotImplementedError

    @classmethod
    def from_resume(cls, config: Config, tensors: dict[str, torch.Tensor], device: Any) -> Task:
        """Rebuild the task of a run being resumed; ``tensors`` are its resume file's (what
        :meth:`saved_tensors` kept, among them). By default as for a new run."""
        return cls.from_config(config, device)

    def describe(self) -> str:
        """What the model learns, in a few words (run names, JSON)."""
        return self.name

    def provenance(self) -> dict[str, Any]:
        """What the run learned from, for the model file's history."""
        return {}

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors the model file keeps beside the weights (a target, a test split)."""
        return dict(self.tensors)

    def trainer(self, config: Config, device: torch.device, world: Any = None) -> Any:
        """The trainer of a task that trains something other than an NCA; None (the default): the NCA
        trainer, :class:`ncacli.train.loop.Trainer`, which training builds itself."""
        return None

    # False: the run's result is not a model file (a picture): nothing to resume, evaluate or load, and the
    # task's own trainer comes with its own saver
    writes_model: ClassVar[bool] = True

    def saver(self, config: Config, run_dir: Any) -> Any:
        """How a run of a task that writes no model keeps its work (a :class:`ncacli.train.session.Saver`)."""
        raise NotImplementedError(f"the {self.name!r} task writes no model and keeps nothing (Task.saver)")

    # what the NCA trainer asks of a task
    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` starting states ``(n, C, H, W)``."""
        raise NotImplementedError

    def start(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """What the verbs grow from: ``n`` states ``(n, C, H, W)`` on ``grid`` (any size; random colours from
        ``generator``, a CPU one). By default the spec's seed kind at its seed positions."""
        from ncacli.engine import make_seed

        t = self.spec.task
        if t.seed_kind == "zeros":
            return torch.zeros(n, self.spec.model.channels, *grid)
        positions = t.seed_positions or [[0.5, 0.5]]
        return make_seed(n, self.spec.model.channels, *grid, positions, kind=t.seed_kind, generator=generator)

    def make_pool(self, trainer: Any) -> Any:
        """The sample pool (None: every batch starts from seeds)."""
        return None

    def batch(self, trainer: Any) -> Batch:
        """The samples of one iteration (drawn from the pool and perturbed, or fresh)."""
        raise NotImplementedError

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """What the update reads but never writes, for samples ``labels`` (None: nothing)."""
        return None

    def loss(self, states: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Per-sample loss ``(B,)``."""
        raise NotImplementedError

    def terms(self) -> dict[str, float]:
        """What the last :meth:`loss` call reports beside the loss (each term of a sum)."""
        return {}

    # whether each training sample has a real picture to be judged against (a critic's objective needs one)
    real_samples: ClassVar[bool] = False
    objectives: list | tuple = ()  # the objectives :meth:`prepare` built (one per class of a conditional image model)

    def training_state(self) -> dict[str, torch.Tensor]:
        """What the run's resume file keeps beyond the NCA and never the model file: the objectives' own
        networks (a critic and its optimiser)."""
        out: dict[str, torch.Tensor] = {}
        for k, objective in enumerate(self.objectives):
            out.update(objective.state_tensors(f"objective.{k}."))
        return out

    def load_training_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for k, objective in enumerate(self.objectives):
            objective.load_state_tensors(tensors, f"objective.{k}.")

    def prepare(self, config: Config, generator: torch.Generator) -> None:
        """Called by the trainer once the model and the pool exist: build what the loss needs (objectives
        that draw random numbers take ``generator``, the trainer's)."""

    def preview(self, trainer: Any) -> bytes:
        """A PNG of where training stands."""
        raise NotImplementedError


class Showing(_Bound):
    """The showing facet: how a state looks, and what ``nca grow``, ``nca render`` and the page ask of a task;
    nothing of them names a task."""

    scale: int = 1  # picture pixels per cell (a latent model's decoder draws 8 × 8 pixels per cell)

    def rgba(self, states: torch.Tensor) -> torch.Tensor:
        """The picture a state stands for, premultiplied RGBA ``(B, 4, H·scale, W·scale)`` (what metrics compare)."""
        return states[:, :4]

    def erase(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``states`` with the cells of ``mask`` ``(B or 1, 1, H·scale, W·scale)`` erased (damage)."""
        from ncacli.engine import apply_damage

        return apply_damage(states, mask)

    def picture(self, states: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """How states look: ``(B, C, H, W)`` → RGB ``(B, 3, H·scale, W·scale)`` in [0, 1]."""
        from ncacli.engine.visible import visible_rgb

        return visible_rgb(self.rgba(states), self.spec.task.background)

    def frame(self, states: torch.Tensor, condition: torch.Tensor | None, scale: int) -> Any:
        """The first sample as a video frame: ``(H·scale, W·scale, 3)`` uint8."""
        from ncacli.io.images import to_pixels

        pixels = self.display_pixels(scale)
        return to_pixels(self.rgba(states[:1])[0], scale=pixels, background=self.spec.task.background)

    def display_pixels(self, scale: int) -> int:
        """Display pixels per picture pixel for ``scale`` display pixels per cell: at least one (a latent
        model's cell is ``self.scale`` pixels of its picture already)."""
        return max(1, round(scale / self.scale))

    not_grown: ClassVar[str] = ""  # why ``nca grow`` does not show the task's models, and what does ("": it does)

    def schedule(self, asked: Asked, grid: tuple[int, int], steps: int, every: int = 1) -> Schedule:
        """What the update reads at each step of the growth ``nca grow`` and ``nca render`` show, from the verb's
        options (``grid``: the grid grown on; ``every``: steps per shown frame). By default nothing: a task whose
        models read a condition says here what to grow them with; until it does, they are refused rather than
        grown from an input made up for them."""
        asked.only((), "this model reads no condition", self.name)
        k = self.spec.model.condition_channels
        if k:
            raise NcaError(
                f"{asked.model}: its task {self.name!r} reads {k} condition channels and does not say what to grow "
                "them with (Task.schedule)"
            )
        return Schedule()

    def check_guidance(self, scale: float, model: str = "the model") -> None:
        """Refuse ``--guidance scale`` for a model not trained to be guided (the default: every model)."""
        raise UsageError(f"--guidance scales classifier-free guidance; {model} (task {self.name!r}) was trained "
                         "without it")  # fmt: skip

    def video(self, model: Any, asked: Asked, scale: int, seed: int) -> tuple[list, dict[str, Any]] | None:
        """The frames ``nca render`` writes and their summary, for a task that shows something other than a
        growth (a video model: its truth beside its prediction); None (default): the growth."""
        return None

    def page_start(self, grid: tuple[int, int], asked: Asked) -> tuple[dict[str, Any], dict[str, Any]]:
        """What the page starts from, as its data (default: ``{"condition": 0}``), and what the verb's summary
        says of it."""
        asked.only((), "this model reads no condition", self.name)
        return {"condition": 0}, {}

    def page_name(self) -> str:
        """What the page's title calls the model ("": the verb names it by its target or file)."""
        return ", ".join(self.spec.task.classes)


# a task's own trials of the growing protocol: targets, the one of each trial, the one each switches to (or None)
Trials = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


class Measuring(_Bound):
    """The measuring facet: what ``nca evaluate`` asks of a task."""

    # what ``nca evaluate --perturb`` can do to the task's states
    perturbations: ClassVar[tuple[str, ...]] = ("damage", "none")
    evaluation_metrics: ClassVar[tuple[str, ...]] = ("lpips", "mse", "psnr", "ssim")  # nca evaluate's default
    damage_shape: ClassVar[str] = "circle"  # the default damage of nca evaluate and nca render

    def trials(self, trials: int, seed: int, perturb: str) -> Trials | None:
        """The growing protocol's trials, for a task whose samples are not classes: ``(targets (N, 4, H, W), the
        target each trial grows towards (N indices, which :meth:`condition` also reads), the one each switches
        to in a mutation (or None))``. None (default): the model's target, or a conditional model's classes."""
        return None

    def evaluate(self, model: Any, **options: Any) -> Any:
        """``nca evaluate`` of this task: a :class:`ncacli.evaluation.report.Report` (the document ``--json``
        prints, the table the terminal shows, a plot), or just the document (a dict of figures, shown as a
        table of them), or None for the growing protocol (:mod:`ncacli.evaluation.protocol`). ``options`` are
        the keywords of :func:`ncacli.evaluation.run.evaluate_model`; a task ignores those it has no use for."""
        return None


class Task(Training, Showing, Measuring):
    """A kind of NCA. An instance is bound to one model: built by :meth:`from_config` for training (it loads
    the target or the data set and writes the spec), or by ``Task(spec, tensors, device)`` from a model file.

    Subclasses set ``name`` and ``summary``, may declare ``Options`` (a dataclass of the options the ``[task]``
    section can set, unknown keys refused), and implement what their facets ask: :class:`Training` (what a run
    learns from and how a batch and its loss are made), :class:`Showing` (how a state looks, what a growth
    reads, what ``nca render`` and the page show) and :class:`Measuring` (what ``nca evaluate`` does).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # "page": the interactive page can show it; "zoom": its state is a picture of the grid, which fractal
    # growth (ncacli.engine.zoom) may upsample as it grows
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        self.spec = spec
        self.tensors = dict(tensors or {})
        self.device = torch.device(device)

    def to(self, device: Any) -> Task:
        """Move the task's tensors to ``device`` (in place; returns the task)."""
        self.device = torch.device(device)
        self.tensors = {k: t.to(self.device) for k, t in self.tensors.items()}
        self.moved()
        return self

    def moved(self) -> None:
        """Called after :meth:`to`: refresh what was derived from ``tensors``."""

    @classmethod
    def check_tensors(cls, spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> str | None:
        """Why a model file's task tensors cannot be this task's (a damaged file), or None."""
        return None


class DatasetTask(Task):
    """A task that learns from a data set split into training and held-out samples (digits, videos). The data
    load on demand (for training, at once); the held-out indices go into the model file (``task.test_index``),
    so evaluation never sees a training sample even if the data set's files change.

    Subclasses set ``options`` (their ``Options``) in ``__init__``, implement :meth:`read`, and name in ``on_device``
    the data's tensors that live on the device; ``data`` is what :meth:`read` returns, with a ``test`` index tensor.
    """

    on_device: ClassVar[tuple[str, ...]] = ()  # the fields of ``data`` that live on the task's device

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.data: Any = None

    def moved(self) -> None:
        if self.data is not None:
            for name in self.on_device:
                setattr(self.data, name, getattr(self.data, name).to(self.device))

    @classmethod
    def read(cls, options: Any, settings: dict[str, Any]) -> Any:
        """Load the data set: ``options`` the task's ``Options``, ``settings`` the grid keys (``size``,
        ``padding``) of the config, or of the spec's task options."""
        raise NotImplementedError

    @classmethod
    def read_for(cls, config: Config) -> Any:
        """The data set of a new run: :meth:`read` with the config's ``[task]`` options and grid keys."""
        return cls.read(cls.Options(**config.task_options), {"size": config.size, "padding": config.padding})

    @classmethod
    def with_data(cls, spec: ModelSpec, data: Any, device: Any) -> DatasetTask:
        """The task of a new run, bound to the ``data`` it was built from."""
        task = cls(spec, {}, device)
        task.data = data
        task.tensors = {"task.test_index": data.test.clone()}
        task.moved()
        return task

    def input_schedule(
        self, asked: Asked, grid: tuple[int, int], who: str, default: str, sample_of: Any, about: Any
    ) -> tuple[Schedule, tuple[int, int]]:
        """The growth of a model that reads a sample's input: ``--input`` (``sample_of`` finds the sample a name
        means; ``default`` when none is given), switched to ``--input-to`` after ``--switch-at``, on the inputs'
        own grid; ``about(sample)`` describes one for the verb's summary. Returns the schedule and both samples."""
        asked.only(("input", "input_to", "switch_at"), f"{who} takes --input and --input-to", self.name)
        if (asked.switch_at is None) != (asked.input_to is None):
            raise UsageError("--switch-at and --input-to go together: switch the input after step N to another")
        if tuple(grid) != tuple(self.spec.task.grid):
            h, w = self.spec.task.grid
            raise UsageError(f"--grid: {who} grows on its inputs' grid, {h}x{w}")
        first = sample_of(asked.input or default)
        after = sample_of(asked.input_to) if asked.input_to is not None else first
        inputs = self.condition(torch.tensor([first, after], device=self.device))
        switch = asked.switch_at
        described = {"input": about(first)}
        if switch is not None:
            described.update(switch_at=switch, input_to=about(after))
        at = lambda step: inputs[:1] if switch is None or step <= switch else inputs[1:]  # noqa: E731
        return Schedule(at, described), (first, after)

    @staticmethod
    def page_planes(images: torch.Tensor, grid: tuple[int, int], who: str) -> list:
        """Input images ``(N, C, h, w)`` for a page: centred in ``grid`` (zeros around them), as lists of their
        channels' ``H×W`` planes (float32 values as Python floats: JSON carries them exactly)."""
        n, c, ih, iw = images.shape
        h, w = grid
        if h < ih or w < iw:
            raise UsageError(f"--grid {h}x{w}: {who} needs at least its images' {ih}x{iw} cells")
        placed = torch.zeros(n, c, h, w)
        top, left = (h - ih) // 2, (w - iw) // 2
        placed[:, :, top : top + ih, left : left + iw] = images.float().cpu()
        return placed.tolist()

    @staticmethod
    def recorded(config: Config, data: Any) -> dict[str, Any]:
        """What a model file's task options keep of a new run's data: the grid keys, the data's source and the
        sizes of its split."""
        return {"size": config.size, "padding": config.padding, "source": data.source, "train": len(data.train),
                "test": len(data.test)}  # fmt: skip

    @staticmethod
    def check_split_and_pool(config: Config, test_fraction: float) -> None:
        """What every data-set task asks of a config: a held-out share in (0, 1), a pool of at least a batch."""
        if not 0.0 < test_fraction < 1.0:
            raise UsageError(f"task.test_fraction must be in (0, 1), not {test_fraction}")
        if config.pool_size < config.batch:
            raise UsageError(f"pool_size ({config.pool_size}) is smaller than batch ({config.batch})")

    def random_samples(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` indices drawn from the training split."""
        train = self.load_data().train.to(self.device)
        return train[torch.randint(len(train), (n,), generator=generator, device=self.device)]

    def worst_first(self, trainer: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A batch drawn from the pool, sorted by loss, worst first → ``(pool indices, states, labels)``."""
        g, n, pool = trainer.generator, trainer.shard.batch, trainer.pool
        idx, x = pool.sample(n, g)
        labels = pool.labels[idx].clone()
        with torch.no_grad():
            order = torch.argsort(self.loss(x, labels), descending=True)
        return idx[order], x[order], labels[order]

    def make_pool(self, trainer: Any) -> Any:
        """A pool of seeds, each labelled with a random training sample."""
        from ncacli.engine import SamplePool

        size = trainer.shard.pool_size
        return SamplePool(trainer.seeds(size), size, self.random_samples(size, trainer.generator))

    def load_data(self) -> Any:
        if self.data is None:
            self.data = self.read(self.options, self.spec.task.options)
            self.moved()
        return self.data

    @classmethod
    def check_tensors(cls, spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> str | None:
        index = tensors.get("task.test_index")
        if index is not None and (index.ndim != 1 or index.dtype.is_floating_point or bool((index < 0).any())):
            return f"its test split is not a list of sample indices ({index.dtype}, {list(index.shape)})"
        return None

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        return {k: t.cpu() for k, t in self.tensors.items()}

    def test_index(self) -> torch.Tensor:
        """The held-out samples' indices: the model file's, else the data set's split."""
        saved = self.tensors.get("task.test_index")
        index = saved if saved is not None else self.load_data().test
        return index.to(self.device).long()


def task_for(spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> Task:
    """The task a model file names, bound to it."""
    from ncacli.errors import NcaError
    from ncacli.registry import TASKS

    if spec.task.name not in TASKS:
        raise NcaError(f"the model's task {spec.task.name!r} is not installed (see `nca plugins`)")
    return TASKS[spec.task.name](spec, tensors, device)
