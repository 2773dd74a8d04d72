"""Published SGD-momentum recipes, each in the convention it was run in.

A :class:`CatalogEntry` records what a paper or its official code states: the citation,
the convention (who put the learning rate where), batch size, epochs, the schedule at the
exact step index of the framework that ran it, what was checked and where, and what is
uncertain, the code that ran it (``framework``) and its data set.
:meth:`CatalogEntry.recipe` builds the :class:`~momentum_convert.recipe.Recipe`
for a given number of optimizer steps per epoch, ready for
:func:`momentum_convert.conversion.convert`. Use :func:`get`, :func:`select` (by framework,
convention, data set) and :data:`ENTRIES`. The model-zoo entries (GluonCV, MXNet,
Detectron, detectron2, mmengine, timm) evaluate their schedules with the importers'
framework rules (:mod:`momentum_convert.importers`).

Step indexing (docs/reference.md, "Scheduler timing"): index ``i`` of a schedule is the
0-based update. Torch7 scripts that set ``optimState.learningRate`` at the start of
1-based epoch ``e`` change the rate at index ``(e - 1)·steps_per_epoch``; Caffe solvers
change it at ``iter`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from momentum_convert import schedules
from momentum_convert.errors import RecipeError
from momentum_convert.importers import detectron, detectron2, gluoncv, mmengine, timm
from momentum_convert.importers.imported import Evaluated
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import Constant, PerStep, Schedule

IMAGENET_TRAIN = 1_281_167
CIFAR_TRAIN = 50_000

#: ``steps_per_epoch -> (lr schedule, momentum schedule, steps)``.
Builder = Callable[[int], tuple[Schedule, Schedule, int]]


@dataclass(frozen=True)
class CatalogEntry:
    """One published recipe.

    Attributes:
        name: the catalog key (``resnet_cifar10``).
        title: what was trained, on what.
        citation: authors, year, title, venue; and the official code when it exists.
        convention: the convention the recipe ran in (``caffe``, ``torch7``, ``sutskever``...).
        lr, momentum, weight_decay, nesterov, dampening: the base hyperparameters, in that
            convention's meaning.
        batch_size: images per optimizer step.
        epochs: passes over the training set (``None`` when the source counts iterations only).
        steps_per_epoch: the default optimizer steps per epoch (the source's data loader).
        schedule: the learning-rate (and momentum) schedule in words.
        verified: what was checked against which source.
        uncertain: what the source leaves open, and what this entry assumes.
        framework: the code that ran it (``caffe``, ``torch7``, ``gluoncv``, ``detectron2``...;
            ``paper`` when only the paper states it).
        dataset: what it trained on (``imagenet``, ``cifar10``, ``coco``, ``mnist``...).
    """

    name: str
    title: str
    citation: str
    convention: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    epochs: float | None
    steps_per_epoch: int
    schedule: str
    verified: str
    uncertain: str
    build: Builder
    nesterov: bool = False
    dampening: float = 0.0
    framework: str = "paper"
    dataset: str = ""

    def recipe(self, steps_per_epoch: int | None = None) -> Recipe:
        """The recipe with ``steps_per_epoch`` optimizer steps per epoch (default: the source's).

        Raises:
            RecipeError: ``steps_per_epoch`` is not a whole number >= 1.
        """
        spe = self.steps_per_epoch if steps_per_epoch is None else steps_per_epoch
        if isinstance(spe, bool) or not isinstance(spe, int) or spe < 1:
            raise RecipeError(f"steps per epoch must be a whole number >= 1, got {spe!r}.")
        lr_schedule, momentum_schedule, steps = self.build(spe)
        return Recipe(
            convention=self.convention,
            lr=self.lr,
            momentum=self.momentum,
            dampening=self.dampening,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            lr_schedule=lr_schedule,
            momentum_schedule=momentum_schedule,
            steps=steps,
        )

    def describe(self) -> dict[str, Any]:
        """The entry's facts as JSON-ready data (no schedules)."""
        return {
            "name": self.name,
            "title": self.title,
            "citation": self.citation,
            "convention": self.convention,
            "framework": self.framework,
            "dataset": self.dataset,
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            "dampening": self.dampening,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "schedule": self.schedule,
            "verified": self.verified,
            "uncertain": self.uncertain,
        }


def _epoch_decays(
    epochs: int, decay_epochs: tuple[int, ...], gamma: float, first_epoch_is_one: bool = True
) -> Builder:
    """Decay by ``gamma`` at the start of each 1-based epoch in ``decay_epochs``."""

    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        offset = 1 if first_epoch_is_one else 0
        milestones = tuple((e - offset) * spe for e in decay_epochs)
        return schedules.MultiStep(milestones=milestones, gamma=gamma), Constant(), epochs * spe

    return build


def _iteration_decays(iterations: tuple[int, ...], gamma: float, steps: int) -> Builder:
    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        return schedules.MultiStep(milestones=iterations, gamma=gamma), Constant(), steps

    return build


def _resnet_imagenet(spe: int) -> tuple[Schedule, Schedule, int]:
    return schedules.MultiStep(milestones=(30 * spe, 60 * spe), gamma=0.1), Constant(), 600_000


def _caffe_step(gamma: float, stepsize: int, max_iter: int) -> Builder:
    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        return schedules.CaffeStep(gamma=gamma, stepsize=stepsize), Constant(), max_iter

    return build


def _sutskever(spe: int) -> tuple[Schedule, Schedule, int]:
    return Constant(), schedules.SutskeverMomentum(mu_max=0.999, period=250), 750_000


def _goyal(spe: int) -> tuple[Schedule, Schedule, int]:
    """Warmup 0.1 -> 3.2 over 5 epochs, ÷10 at 30/60/80, with momentum correction (Form S)."""
    warmup = 5 * spe
    after = tuple(e * spe - warmup for e in (30, 60, 80))
    lr = schedules.Warmup(
        steps=warmup,
        then=schedules.MultiStep(milestones=after, gamma=0.1),
        start_factor=0.1 / 3.2,
    )
    steps = 90 * spe
    eta = lr.values(3.2, steps)
    # Momentum correction (Goyal et al. eq. 10): v_t = μ (η_t/η_{t-1}) v_{t-1} - η_t ĝ_t.
    corrected = np.concatenate([[0.9], 0.9 * eta[1:] / eta[:-1]])
    return lr, PerStep.of(corrected), steps


def _sgdr(spe: int) -> tuple[Schedule, Schedule, int]:
    """SGDR_WRNs.py scenario 6: Te = 10, multFactor = 2, lr = 0.05, 200 epochs.

    The script sets the rate *after* each batch: ``tt += π / (Te · 100000/128)``,
    ``lr = 0.05 (1 + cos(tt)) / 2``; at the end of epoch ``TeNext`` it sets ``tt = 0`` but
    not the rate, so the first batch after a restart still uses the last rate before it.
    """
    batches_per_epoch_float = 100_000 / 128  # the script divides by len(Y_train)/batchsize
    steps = 200 * spe
    lr = np.empty(steps)
    lr[0] = 0.05
    start, period, index = 0, 10, 1
    while start < steps:
        end = min(start + period * spe, steps)
        k = np.arange(1, end - start)  # batches already taken in this period
        tt = k * (math.pi / period) / batches_per_epoch_float
        lr[start + 1 : end] = 0.05 * (1.0 + np.cos(tt)) / 2.0
        if end < steps:
            # The restart resets tt, not the rate: the next batch uses the rate set after
            # the last batch of this period.
            tt_last = (end - start) * (math.pi / period) / batches_per_epoch_float
            lr[end] = 0.05 * (1.0 + math.cos(tt_last)) / 2.0
        start, period, index = end, period * 2, index + 1
    return PerStep.of(lr), Constant(), steps


def _gluoncv_imagenet(
    lr: float, mode: str, epochs: int, warmup: int, decay: tuple[int, ...], factor: float
) -> Builder:
    """GluonCV ``train_imagenet.py``'s ``LRSequential`` (see :mod:`~momentum_convert.importers.
    gluoncv`): a step decay at epoch ``e`` already applies to the last update of epoch ``e``."""

    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        steps = epochs * spe
        rates = gluoncv.imagenet_rates(lr, mode, epochs, warmup, spe, list(decay), factor, steps)
        label = f"gluoncv LRSequential(warmup {warmup}, {mode}, {epochs} epochs, {spe} iters)"
        return Evaluated(label, rates), Constant(), steps

    return build


def _epoch_starts(epochs: int, decay_epochs: tuple[int, ...], gamma: float) -> Builder:
    """Decay by ``gamma`` from the start of each 0-based epoch in ``decay_epochs``."""

    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        milestones = tuple(e * spe for e in decay_epochs)
        return schedules.MultiStep(milestones=milestones, gamma=gamma), Constant(), epochs * spe

    return build


def _detectron(solver: dict[str, Any]) -> Builder:
    """Detectron's ``get_lr_at_iter`` and ``SCALE_MOMENTUM`` (iterations: ``spe`` unused)."""

    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        parsed = detectron.parse_solver({"SOLVER": solver}, "catalog")
        steps = parsed["MAX_ITER"]
        lr = parsed.learning_rates(steps)
        momentum = parsed.momentum_per_step(lr)
        return (
            Evaluated("detectron steps_with_decay (warmup 500)", lr),
            Evaluated("detectron SCALE_MOMENTUM", momentum),
            steps,
        )

    return build


def _detectron2(solver: dict[str, Any]) -> Builder:
    """detectron2's ``LRMultiplier`` of ``WarmupMultiStepLR`` (iterations: ``spe`` unused)."""

    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        parsed = detectron2.parse_solver(solver, "catalog")
        steps = parsed["MAX_ITER"]
        lr = parsed.learning_rates(steps)
        return Evaluated(f"detectron2 {parsed['LR_SCHEDULER_NAME']}", lr), Constant(), steps

    return build


def _mmengine(lr: float, entries: list[dict[str, Any]], epochs: int) -> Builder:
    """mmengine's chained schedulers stepped by ``ParamSchedulerHook``."""

    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        parsed = [mmengine.parse_scheduler(e, spe, "catalog") for e in entries]
        steps = epochs * spe
        rates = mmengine.learning_rates(lr, parsed, steps, spe)
        label = "mmengine " + " + ".join(p.kind for p in parsed)
        return Evaluated(label, rates), Constant(), steps

    return build


def _timm(args: dict[str, Any]) -> Builder:
    """timm's ``create_scheduler_v2`` as ``train.py`` steps it (per epoch)."""

    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        recipe = timm.to_recipe(args, "catalog", steps_per_epoch=spe).recipe
        return recipe.lr_schedule, Constant(), recipe.steps

    return build


def _caffe_stages(stages: tuple[tuple[float, int], ...]) -> Builder:
    """Caffe solvers run one after another from snapshots (``train_full.sh``): ``(base_lr,
    max_iter)`` each, the history carried over in the ``.solverstate``."""

    def build(spe: int) -> tuple[Schedule, Schedule, int]:
        ends = [end for _, end in stages]
        rates = np.repeat([rate for rate, _ in stages], np.diff((0, *ends)))
        return PerStep.of(rates), Constant(), ends[-1]

    return build


def _entries() -> list[CatalogEntry]:
    return [
        CatalogEntry(
            name="alexnet2012",
            framework="paper",
            dataset="imagenet",
            title="AlexNet on ImageNet (ILSVRC-2012)",
            citation="Krizhevsky, Sutskever & Hinton (2012), 'ImageNet Classification with Deep"
            " Convolutional Neural Networks', NIPS, section 5.",
            convention="sutskever",
            lr=0.01,
            momentum=0.9,
            weight_decay=0.0005,
            batch_size=128,
            epochs=90,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 128),
            schedule="0.01, divided by 10 three times (here at epochs 30, 60 and 80) over 90"
            " epochs",
            verified="The update v ← 0.9v − 0.0005·ε·w − ε·∂L/∂w, w ← w + v (Form S with coupled"
            " weight decay inside the velocity), ε = 0.01, batch 128, three divisions by 10,"
            " roughly 90 cycles: the paper's section 5 as quoted in docs/reference.md.",
            uncertain="The paper divides 'when the validation error rate stopped improving': the"
            " epochs of the three cuts are not stated; 30, 60 and 80 are an assumption."
            " cuda-convnet computed in float32.",
            build=_epoch_decays(90, (31, 61, 81), 0.1),
        ),
        CatalogEntry(
            name="sutskever2013",
            framework="paper",
            dataset="curves/mnist/faces",
            title="Deep autoencoders with the Sutskever momentum schedule",
            citation="Sutskever, Martens, Dahl & Hinton (2013), 'On the importance of"
            " initialization and momentum in deep learning', ICML, section 3, eq. (5).",
            convention="sutskever",
            lr=0.01,
            momentum=0.999,
            weight_decay=0.0,
            batch_size=200,
            epochs=None,
            steps_per_epoch=1,
            schedule="momentum μ_t = min(1 − 1/(2(⌊t/250⌋ + 1)), μ_max) with μ_max = 0.999;"
            " constant learning rate",
            verified="The momentum schedule's formula and its values (0.5 for the first 250"
            " updates, 0.75, 0.8333, 0.875, 0.9 from update 1001) as docs/reference.md states"
            " eq. (5).",
            uncertain="The learning rate was tuned per problem from {0.05, 0.01, 0.005, 0.001,"
            " 0.0005, 0.0001}; 0.01 is one of them. μ_max ∈ {0.999, 0.995, 0.99, 0.9, 0} was"
            " swept; 0.999 is the largest. The 750,000 updates and batch 200 were not checked"
            " against the text. The paper's NAG variant is Nesterov in Sutskever's θ variables.",
            build=_sutskever,
        ),
        CatalogEntry(
            name="resnet_imagenet",
            framework="paper",
            dataset="imagenet",
            title="ResNet on ImageNet",
            citation="He, Zhang, Ren & Sun (2016), 'Deep Residual Learning for Image"
            " Recognition', CVPR, section 3.4.",
            convention="caffe",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=256,
            epochs=600_000 * 256 / IMAGENET_TRAIN,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 256),
            schedule="0.1, divided by 10 when the error plateaus (here at epochs 30 and 60),"
            " up to 600,000 iterations",
            verified="lr 0.1, batch 256, momentum 0.9, weight decay 0.0001, up to 60×10^4"
            " iterations, division by 10 on plateaus: section 3.4 of the paper.",
            uncertain="The plateau epochs are not stated; 30 and 60 are an assumption taken from"
            " fb.resnet.torch (see fb_resnet_imagenet). The authors' training code is not public;"
            " 'caffe' (lr inside the velocity) assumes their Caffe-style solver.",
            build=_resnet_imagenet,
        ),
        CatalogEntry(
            name="resnet_cifar10",
            framework="paper",
            dataset="cifar10",
            title="ResNet-20/32/44/56 on CIFAR-10",
            citation="He, Zhang, Ren & Sun (2016), 'Deep Residual Learning for Image"
            " Recognition', CVPR, section 4.2.",
            convention="caffe",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=128,
            epochs=64_000 * 128 / 45_000,
            steps_per_epoch=math.ceil(45_000 / 128),
            schedule="0.1, divided by 10 at 32k and 48k iterations, stop at 64k",
            verified="lr 0.1 divided by 10 at 32k and 48k iterations, training ends at 64k,"
            " batch 128, weight decay 0.0001, momentum 0.9, on a 45k/5k train/val split:"
            " section 4.2 of the paper. The schedule is in iterations, so --steps-per-epoch"
            " does not change it.",
            uncertain="ResNet-110 first warms up at 0.01 until the training error is below 80%"
            " (about 400 iterations); not included. The solver's convention (Caffe) is assumed.",
            build=_iteration_decays((32_000, 48_000), 0.1, 64_000),
        ),
        CatalogEntry(
            name="goyal2017",
            framework="paper",
            dataset="imagenet",
            title="ResNet-50 on ImageNet in 1 hour, minibatch 8192",
            citation="Goyal, Dollár, Girshick, Noordhuis, Wesolowski, Kyrola, Tulloch, Jia & He"
            " (2017), 'Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour',"
            " arXiv:1706.02677, sections 2.1-2.2 and 5.1.",
            convention="sutskever",
            lr=3.2,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=8192,
            epochs=90,
            steps_per_epoch=IMAGENET_TRAIN // 8192,
            schedule="linear scaling η = 0.1·kn/256 = 3.2; gradual warmup from 0.1 to 3.2 over"
            " 5 epochs, a constant increment per iteration; ÷10 at epochs 30, 60, 80; Form S with"
            " momentum correction μ_t = 0.9·η_t/η_(t-1) at every change",
            verified="η = 0.1·kn/256, μ = 0.9, λ = 1e-4, 5-epoch gradual warmup, ÷10 at 30, 60, 80,"
            " Form S with momentum correction: as docs/reference.md summarises the paper.",
            uncertain="Whether the warmup reaches 3.2 on the last warmup iteration or the first"
            " after it (here: the first after, i.e. η_i = 0.1 + 3.1·i/W); the iterations per epoch"
            " (here ⌊1281167/8192⌋ = 156); 'no weight decay on BN γ/β' is a per-group detail."
            " With the correction the recipe is exactly PyTorch's μ = 0.9.",
            build=_goyal,
        ),
        CatalogEntry(
            name="caffe_alexnet",
            framework="caffe",
            dataset="imagenet",
            title="BVLC AlexNet reproduction (Caffe model zoo)",
            citation="BVLC/caffe, models/bvlc_alexnet/solver.prototxt (Jia et al. 2014, 'Caffe:"
            " Convolutional Architecture for Fast Feature Embedding').",
            convention="caffe",
            lr=0.01,
            momentum=0.9,
            weight_decay=0.0005,
            batch_size=256,
            epochs=450_000 * 256 / IMAGENET_TRAIN,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 256),
            schedule='lr_policy "step": 0.01·0.1^⌊iter/100000⌋, max_iter 450000',
            verified="base_lr 0.01, lr_policy step, gamma 0.1, stepsize 100000, max_iter 450000,"
            " momentum 0.9, weight_decay 0.0005: BVLC/caffe models/bvlc_alexnet/solver.prototxt,"
            " read via the code search.",
            uncertain="Batch 256 is the train_val.prototxt's batch_size (not re-read here);"
            " per-layer lr_mult 1/2 and decay_mult 1/0 for weights/biases apply per group.",
            build=_caffe_step(0.1, 100_000, 450_000),
        ),
        CatalogEntry(
            name="caffe_googlenet",
            framework="caffe",
            dataset="imagenet",
            title="BVLC GoogLeNet reproduction (Caffe model zoo)",
            citation="BVLC/caffe, models/bvlc_googlenet/solver.prototxt; Szegedy et al. (2015),"
            " 'Going Deeper with Convolutions', CVPR (4% decrease every 8 epochs).",
            convention="caffe",
            lr=0.01,
            momentum=0.9,
            weight_decay=0.0002,
            batch_size=32,
            epochs=None,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 32),
            schedule='lr_policy "step": 0.01·0.96^⌊iter/320000⌋, max_iter 10,000,000',
            verified="base_lr 0.01, lr_policy step, stepsize 320000, gamma 0.96, max_iter"
            " 10000000, momentum 0.9, weight_decay 0.0002: BVLC/caffe"
            " models/bvlc_googlenet/solver.prototxt, read via the code search.",
            uncertain="The paper itself trained asynchronously (DistBelief) with a 4% decrease"
            " every 8 epochs; this is the Caffe reproduction. Batch 32 is train_val.prototxt's"
            " (not re-read here).",
            build=_caffe_step(0.96, 320_000, 10_000_000),
        ),
        CatalogEntry(
            name="fb_resnet_imagenet",
            framework="torch7",
            dataset="imagenet",
            title="ResNet on ImageNet, fb.resnet.torch (Torch7)",
            citation="Gross & Wilber (2016), fb.resnet.torch (facebookarchive/fb.resnet.torch),"
            " reproducing He et al. (2016).",
            convention="torch7",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            dampening=0.0,
            batch_size=256,
            epochs=90,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 256),
            schedule="0.1·0.1^⌊(epoch−1)/30⌋ set at the start of each 1-based epoch, 90 epochs",
            verified="train.lua: optim.sgd with nesterov = true, dampening = 0.0, learningRate"
            " 0.1·0.1^floor((epoch-1)/30); opts.lua: LR 0.1, momentum 0.9, weightDecay 1e-4,"
            " nEpochs 90 for imagenet (read via the code search). TRAINING.md's batch 256.",
            uncertain="The batch size is a command-line option (default 32; the README's ImageNet"
            " runs use 256); the data loader's steps per epoch are ⌈N/batch⌉.",
            build=_epoch_decays(90, (31, 61), 0.1),
        ),
        CatalogEntry(
            name="fb_resnet_cifar10",
            framework="torch7",
            dataset="cifar10",
            title="ResNet on CIFAR-10, fb.resnet.torch (Torch7)",
            citation="Gross & Wilber (2016), fb.resnet.torch (facebookarchive/fb.resnet.torch).",
            convention="torch7",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            dampening=0.0,
            batch_size=128,
            epochs=164,
            steps_per_epoch=math.ceil(CIFAR_TRAIN / 128),
            schedule="0.1, ×0.1 from epoch 81 and again from epoch 122, 164 epochs",
            verified="train.lua: decay = epoch >= 122 and 2 or epoch >= 81 and 1 or 0; opts.lua:"
            " nEpochs 164 for cifar10 (read via the code search).",
            uncertain="Batch 128 is the README's CIFAR command, not a default.",
            build=_epoch_decays(164, (81, 122), 0.1),
        ),
        CatalogEntry(
            name="wide_resnet_cifar",
            framework="torch7",
            dataset="cifar10",
            title="Wide ResNet (WRN-28-10) on CIFAR",
            citation="Zagoruyko & Komodakis (2016), 'Wide Residual Networks', BMVC;"
            " szagoruyko/wide-residual-networks (Torch7).",
            convention="torch7",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0005,
            nesterov=True,
            dampening=0.0,
            batch_size=128,
            epochs=200,
            steps_per_epoch=CIFAR_TRAIN // 128,
            schedule="0.1, ×0.2 at the start of epochs 60, 120 and 160, 200 epochs",
            verified="scripts/train_cifar.sh: learningRate 0.1, epoch_step {60,120,160},"
            " max_epoch 200, learningRateDecayRatio 0.2, nesterov true; train.lua: batchSize 128,"
            " weightDecay 0.0005, momentum 0.9, dampening 0, the rate updated before training"
            " epoch e when e is in epoch_step, the last partial batch dropped (read via the"
            " code search).",
            uncertain="None in the schedule; the decay lands after 59, 119 and 159 full epochs"
            " (the script updates at the start of the listed epoch).",
            build=_epoch_decays(200, (60, 120, 160), 0.2),
        ),
        CatalogEntry(
            name="densenet_cifar",
            framework="torch7",
            dataset="cifar10",
            title="DenseNet on CIFAR-10/100",
            citation="Huang, Liu, van der Maaten & Weinberger (2017), 'Densely Connected"
            " Convolutional Networks', CVPR; liuzhuang13/DenseNet (Torch7).",
            convention="torch7",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            dampening=0.0,
            batch_size=64,
            epochs=300,
            steps_per_epoch=math.ceil(CIFAR_TRAIN / 64),
            schedule="0.1, ×0.1 from epoch 150 (50%) and from epoch 225 (75%), 300 epochs",
            verified="train.lua: decay = epoch >= 0.75·nEpochs and 2 or epoch >= 0.5·nEpochs"
            " and 1 or 0, optim.sgd with nesterov = true, dampening 0 (read via the code"
            " search); batch 64, 300 epochs, weight decay 1e-4, Nesterov 0.9: the paper.",
            uncertain="Epoch counts are 1-based in the script, so the first cut is at the start"
            " of epoch 150 (after 149 epochs).",
            build=_epoch_decays(300, (150, 225), 0.1),
        ),
        CatalogEntry(
            name="sgdr_wrn",
            framework="lasagne",
            dataset="cifar10",
            title="SGDR on WRN-28-10, CIFAR-10 (T0 = 10, Tmult = 2)",
            citation="Loshchilov & Hutter (2017), 'SGDR: Stochastic Gradient Descent with Warm"
            " Restarts', ICLR; loshchil/SGDR SGDR_WRNs.py scenario 6 (Lasagne).",
            convention="lasagne",
            lr=0.05,
            momentum=0.9,
            weight_decay=0.0005,
            batch_size=128,
            epochs=200,
            steps_per_epoch=100_000 // 128,
            schedule="cosine from 0.05 to 0 per batch, restarts after 10, 30, 70 and 150 epochs,"
            " 200 epochs",
            verified="SGDR_WRNs.py: lasagne.updates.momentum (Form S, μ = 0.9), lr 0.05, Te 10,"
            " multFactor 2, num_epochs 200, batch 128 over 100,000 images (CIFAR + flips),"
            " l2 penalty 0.0005·Σw², rate = 0.05(1 + cos tt)/2 set after each batch with"
            " tt += π/(Te·781.25), restart by tt = 0 at the end of epoch TeNext (read via the"
            " code search).",
            uncertain="Theano ran in float32. The restart resets tt but the first batch after it"
            " still uses the last rate of the previous period (reproduced here).",
            build=_sgdr,
        ),
        CatalogEntry(
            name="he2019_baseline",
            framework="gluoncv",
            dataset="imagenet",
            title="ResNet-50 baseline of 'Bag of Tricks' on ImageNet (NAG)",
            citation="He, Zhang, Zhang, Zhang, Xie & Li (2019), 'Bag of Tricks for Image"
            " Classification with Convolutional Neural Networks', CVPR, section 2.2; run with"
            " GluonCV scripts/classification/imagenet/train_imagenet.py.",
            convention="mxnet",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            batch_size=256,
            epochs=120,
            steps_per_epoch=IMAGENET_TRAIN // 256,
            schedule="NAG, 0.1 divided by 10 at epochs 30, 60 and 90, 120 epochs",
            verified="NAG, batch 256, lr 0.1 ÷10 at the 30th, 60th and 90th epochs, 120 epochs,"
            " weight decay 1e-4, momentum 0.9: section 2.2 of the paper; the step index of"
            " GluonCV's LRSequential (the decay already applies to the last update of epoch 30).",
            uncertain="The paper's baseline was trained with GluonCV's script of its time; this"
            " uses today's train_imagenet.py indexing. Updates per epoch ⌊1281167/256⌋ = 5004.",
            build=_gluoncv_imagenet(0.1, "step", 120, 0, (30, 60, 90), 0.1),
        ),
        CatalogEntry(
            name="he2019_tricks",
            framework="gluoncv",
            dataset="imagenet",
            title="ResNet-50-D with the 'Bag of Tricks' schedule (GluonCV model zoo)",
            citation="He et al. (2019), 'Bag of Tricks ...', CVPR, sections 3.1 and 5.1;"
            " dmlc/web-data gluoncv/logs/classification/imagenet/resnet50_v1d.sh (the model"
            " zoo's training command for ResNet50_v1d).",
            convention="mxnet",
            lr=0.4,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            batch_size=1024,
            epochs=120,
            steps_per_epoch=IMAGENET_TRAIN // 1024,
            schedule="linear warmup from 0 over 5 epochs to 0.4 (0.1·1024/256), cosine to 0 over"
            " the other 115 epochs; no weight decay on biases and BN β/γ (--no-wd)",
            verified="train_imagenet.py --lr 0.4 --lr-mode cosine --num-epochs 120 --batch-size 128"
            " --num-gpus 8 --warmup-epochs 5 --no-wd --last-gamma --label-smoothing: the model"
            " zoo's command; LRSequential of gluoncv/utils/lr_scheduler.py.",
            uncertain="float16 training (--dtype float16, multi_precision). The last two updates"
            " use lr 0 (LRSequential clips num_update), which no lr-outside optimizer can"
            " reproduce exactly: the conversion says impossible there.",
            build=_gluoncv_imagenet(0.4, "cosine", 120, 5, (), 0.1),
        ),
        CatalogEntry(
            name="gluoncv_resnet50_v1",
            framework="gluoncv",
            dataset="imagenet",
            title="ResNet50_v1 (GluonCV model zoo)",
            citation="dmlc/web-data gluoncv/logs/classification/imagenet/resnet50_v1.sh, linked"
            " from dmlc/gluon-cv docs/model_zoo/csv_tables/Classifications/ResNet.csv.",
            convention="mxnet",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            batch_size=256,
            epochs=150,
            steps_per_epoch=IMAGENET_TRAIN // 256,
            schedule="NAG, 0.1 ÷10 at epochs 30, 60, 90, 150 epochs",
            verified="--batch-size 64 --num-gpus 4 --num-epochs 150 --lr 0.1 --momentum 0.9"
            " --wd 0.0001 --lr-decay 0.1 --lr-decay-epoch 30,60,90: the model zoo's command.",
            uncertain="The 2018 command ran an older train_imagenet.py; today's LRSequential"
            " indexing is assumed.",
            build=_gluoncv_imagenet(0.1, "step", 150, 0, (30, 60, 90), 0.1),
        ),
        CatalogEntry(
            name="gluoncv_vgg16",
            framework="gluoncv",
            dataset="imagenet",
            title="VGG-16 (GluonCV model zoo)",
            citation="Simonyan & Zisserman (2015), 'Very Deep Convolutional Networks', ICLR;"
            " dmlc/web-data gluoncv/logs/classification/imagenet/vgg16.sh.",
            convention="mxnet",
            lr=0.01,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            batch_size=256,
            epochs=100,
            steps_per_epoch=IMAGENET_TRAIN // 256,
            schedule="NAG, 0.01 ÷10 at epochs 50 and 80, 100 epochs",
            verified="--batch-size 32 --num-gpus 8 --num-epochs 100 --lr 0.01 --lr-decay 0.1"
            " --lr-decay-epoch 50,80: the model zoo's command (momentum and wd: the script's"
            " defaults 0.9 and 1e-4).",
            uncertain="Not the paper's recipe (batch 256, lr 0.01 ÷10 three times on plateaus,"
            " weight decay 5e-4, 74 epochs, in a Caffe-derived toolbox).",
            build=_gluoncv_imagenet(0.01, "step", 100, 0, (50, 80), 0.1),
        ),
        CatalogEntry(
            name="gluoncv_mobilenetv2",
            framework="gluoncv",
            dataset="imagenet",
            title="MobileNetV2 1.0 (GluonCV model zoo)",
            citation="Sandler et al. (2018), 'MobileNetV2', CVPR; dmlc/web-data"
            " gluoncv/logs/classification/imagenet/mobilenetv2_1.0.sh.",
            convention="mxnet",
            lr=0.045,
            momentum=0.9,
            weight_decay=0.00004,
            nesterov=True,
            batch_size=160,
            epochs=480,
            steps_per_epoch=IMAGENET_TRAIN // 160,
            schedule="NAG, 0.045 × 0.98 every epoch (--lr-decay-period 1), 480 epochs",
            verified="--batch-size 40 --num-gpus 4 --num-epochs 480 --lr 0.045 --wd 0.00004"
            " --lr-decay 0.98 --lr-decay-period 1: the model zoo's command.",
            uncertain="The paper trained with RMSProp (decay 0.9, momentum 0.9); this is GluonCV's"
            " SGD reproduction.",
            build=_gluoncv_imagenet(0.045, "step", 480, 0, tuple(range(1, 480)), 0.98),
        ),
        CatalogEntry(
            name="gluoncv_cifar_resnet20",
            framework="gluoncv",
            dataset="cifar10",
            title="CIFAR_ResNet20_v1 (GluonCV model zoo)",
            citation="dmlc/web-data gluoncv/logs/classification/cifar/cifar_resnet20_v1.sh, linked"
            " from dmlc/gluon-cv docs/model_zoo/csv_tables/Classifications/CIFAR10.csv.",
            convention="mxnet",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            batch_size=128,
            epochs=200,
            steps_per_epoch=CIFAR_TRAIN // 128,
            schedule="NAG, 0.1 ×0.1 from the start of 0-based epochs 100 and 150, 200 epochs",
            verified="--num-epochs 200 --batch-size 128 --wd 0.0001 --lr 0.1 --lr-decay 0.1"
            " --lr-decay-epoch 100,150: the command; train_cifar10.py's set_learning_rate at the"
            " start of the epoch, last_batch='discard'.",
            uncertain="None in the schedule.",
            build=_epoch_starts(200, (100, 150), 0.1),
        ),
        CatalogEntry(
            name="mxnet_resnet50_imagenet",
            framework="mxnet",
            dataset="imagenet",
            title="ResNet-50 with MXNet's example/image-classification (Module.fit)",
            citation="apache/mxnet v1.9.x example/image-classification/train_imagenet.py and"
            " common/fit.py.",
            convention="mxnet",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=128,
            epochs=80,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 128),
            schedule="SGD, MultiFactorScheduler ×0.1 after epochs 30 and 60, 80 epochs",
            verified="set_defaults num_epochs 80, lr_step_epochs '30,60'; fit.py defaults lr 0.1,"
            " lr_factor 0.1, mom 0.9, wd 1e-4, batch 128, optimizer sgd; MultiFactorScheduler"
            " decays once num_update > epoch_size·30.",
            uncertain="Batch 128 is fit.py's default (multi-GPU runs pass --batch-size).",
            build=_epoch_starts(80, (30, 60), 0.1),
        ),
        CatalogEntry(
            name="mxnet_resnet110_cifar10",
            framework="mxnet",
            dataset="cifar10",
            title="ResNet-110 on CIFAR-10 with MXNet's example/image-classification",
            citation="apache/mxnet v1.9.x example/image-classification/train_cifar10.py and"
            " common/fit.py.",
            convention="mxnet",
            lr=0.05,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=128,
            epochs=300,
            steps_per_epoch=math.ceil(CIFAR_TRAIN / 128),
            schedule="SGD, 0.05 ×0.1 after epochs 200 and 250, 300 epochs",
            verified="set_defaults num_layers 110, batch 128, num_epochs 300, lr .05,"
            " lr_step_epochs '200,250'; fit.py's MultiFactorScheduler over ⌈50000/128⌉ = 391"
            " updates per epoch.",
            uncertain="None in the schedule.",
            build=_epoch_starts(300, (200, 250), 0.1),
        ),
        CatalogEntry(
            name="detectron_mask_rcnn_1x",
            framework="detectron",
            dataset="coco",
            title="Mask R-CNN R-50-FPN 1x, Detectron (Caffe2)",
            citation="He, Gkioxari, Dollár & Girshick (2017), 'Mask R-CNN', ICCV;"
            " facebookresearch/Detectron configs/12_2017_baselines/e2e_mask_rcnn_R-50-FPN_1x.yaml.",
            convention="caffe",
            lr=0.02,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=16,
            epochs=None,
            steps_per_epoch=1,
            schedule="0.02 with a 500-iteration linear warmup from 1/3, ÷10 at 60k and 80k, 90k"
            " iterations; SCALE_MOMENTUM rescales the history at both cuts",
            verified="SOLVER BASE_LR 0.02, LR_POLICY steps_with_decay, STEPS [0, 60000, 80000],"
            " MAX_ITER 90000, WEIGHT_DECAY 1e-4, NUM_GPUS 8 (2 images each): the config;"
            " warmup and SCALE_MOMENTUM defaults from detectron/core/config.py.",
            uncertain="Caffe2 computes in float32; biases train at 2× the lr without decay.",
            build=_detectron(
                {
                    "BASE_LR": 0.02,
                    "LR_POLICY": "steps_with_decay",
                    "STEPS": [0, 60000, 80000],
                    "MAX_ITER": 90000,
                    "WEIGHT_DECAY": 0.0001,
                    "GAMMA": 0.1,
                }
            ),
        ),
        CatalogEntry(
            name="detectron2_mask_rcnn_1x",
            framework="detectron2",
            dataset="coco",
            title="Mask R-CNN R-50-FPN 1x, detectron2",
            citation="Wu, Kirillov, Massa, Lo & Girshick (2019), detectron2;"
            " configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml over"
            " configs/Base-RCNN-FPN.yaml.",
            convention="pytorch",
            lr=0.02,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=16,
            epochs=None,
            steps_per_epoch=1,
            schedule="0.02 with a 1000-iteration linear warmup from 0.001×, ÷10 at 60k and 80k,"
            " 90k iterations; no weight decay on norm layers",
            verified="Base-RCNN-FPN.yaml IMS_PER_BATCH 16, BASE_LR 0.02, STEPS (60000, 80000),"
            " MAX_ITER 90000; defaults.py warmup 1000 iterations from 1/1000, WEIGHT_DECAY_NORM 0.",
            uncertain="None in the schedule; REFERENCE_WORLD_SIZE 0 (no automatic rescaling).",
            build=_detectron2({"BASE_LR": 0.02, "STEPS": (60000, 80000), "MAX_ITER": 90000}),
        ),
        CatalogEntry(
            name="detectron2_mask_rcnn_3x",
            framework="detectron2",
            dataset="coco",
            title="Mask R-CNN R-50-FPN 3x, detectron2",
            citation="detectron2 configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml.",
            convention="pytorch",
            lr=0.02,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=16,
            epochs=None,
            steps_per_epoch=1,
            schedule="0.02, warmup 1000 iterations, ÷10 at 210k and 250k, 270k iterations",
            verified="STEPS (210000, 250000), MAX_ITER 270000 over Base-RCNN-FPN.yaml.",
            uncertain="None in the schedule.",
            build=_detectron2({"BASE_LR": 0.02, "STEPS": (210000, 250000), "MAX_ITER": 270000}),
        ),
        CatalogEntry(
            name="detectron2_retinanet_1x",
            framework="detectron2",
            dataset="coco",
            title="RetinaNet R-50-FPN 1x, detectron2",
            citation="Lin, Goyal, Girshick, He & Dollár (2017), 'Focal Loss for Dense Object"
            " Detection', ICCV; detectron2 configs/COCO-Detection/retinanet_R_50_FPN_1x.yaml"
            " over configs/Base-RetinaNet.yaml.",
            convention="pytorch",
            lr=0.01,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=16,
            epochs=None,
            steps_per_epoch=1,
            schedule="0.01, warmup 1000 iterations, ÷10 at 60k and 80k, 90k iterations",
            verified="Base-RetinaNet.yaml BASE_LR 0.01, STEPS (60000, 80000), MAX_ITER 90000.",
            uncertain="None in the schedule.",
            build=_detectron2({"BASE_LR": 0.01, "STEPS": (60000, 80000), "MAX_ITER": 90000}),
        ),
        CatalogEntry(
            name="mmdet_schedule_1x",
            framework="mmengine",
            dataset="coco",
            title="mmdetection's 1x schedule (Faster/Mask R-CNN, 12 epochs)",
            citation="open-mmlab/mmdetection configs/_base_/schedules/schedule_1x.py (mmengine).",
            convention="pytorch",
            lr=0.02,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=16,
            epochs=12,
            steps_per_epoch=7330,
            schedule="LinearLR from 0.001× over 500 iterations, MultiStepLR ×0.1 after epochs 8"
            " and 11, 12 epochs",
            verified="param_scheduler LinearLR(start_factor=0.001, by_epoch=False, end=500) and"
            " MultiStepLR(by_epoch=True, milestones=[8, 11]); SGD lr 0.02, momentum 0.9, wd 1e-4:"
            " the config.",
            uncertain="7330 iterations per epoch: 117266 COCO train2017 images with annotations,"
            " 8 GPUs × 2 images (⌈⌈117266/8⌉/2⌉); another data set or batch changes it.",
            build=_mmengine(
                0.02,
                [
                    {
                        "type": "LinearLR",
                        "start_factor": 0.001,
                        "by_epoch": False,
                        "begin": 0,
                        "end": 500,
                    },
                    {
                        "type": "MultiStepLR",
                        "begin": 0,
                        "end": 12,
                        "by_epoch": True,
                        "milestones": [8, 11],
                        "gamma": 0.1,
                    },
                ],
                12,
            ),
        ),
        CatalogEntry(
            name="mmpretrain_resnet50_imagenet",
            framework="mmengine",
            dataset="imagenet",
            title="ResNet-50 on ImageNet, mmpretrain (imagenet_bs256)",
            citation="open-mmlab/mmpretrain configs/_base_/schedules/imagenet_bs256.py.",
            convention="pytorch",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=256,
            epochs=100,
            steps_per_epoch=math.ceil(math.ceil(IMAGENET_TRAIN / 8) / 32),
            schedule="MultiStepLR ×0.1 after epochs 30, 60 and 90, 100 epochs",
            verified="SGD lr 0.1, momentum 0.9, wd 1e-4; MultiStepLR(by_epoch=True,"
            " milestones=[30, 60, 90]); max_epochs 100: the config.",
            uncertain="8 GPUs × 32 images assumed: ⌈⌈1281167/8⌉/32⌉ = 5005 iterations per epoch.",
            build=_mmengine(
                0.1,
                [
                    {
                        "type": "MultiStepLR",
                        "by_epoch": True,
                        "milestones": [30, 60, 90],
                        "gamma": 0.1,
                    }
                ],
                100,
            ),
        ),
        CatalogEntry(
            name="mmpretrain_resnet_cifar10",
            framework="mmengine",
            dataset="cifar10",
            title="ResNet on CIFAR-10, mmpretrain (cifar10_bs128)",
            citation="open-mmlab/mmpretrain configs/_base_/schedules/cifar10_bs128.py.",
            convention="pytorch",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            batch_size=128,
            epochs=200,
            steps_per_epoch=math.ceil(math.ceil(CIFAR_TRAIN / 8) / 16),
            schedule="MultiStepLR ×0.1 after epochs 100 and 150, 200 epochs",
            verified="SGD lr 0.1, momentum 0.9, wd 1e-4; MultiStepLR(by_epoch=True,"
            " milestones=[100, 150]); max_epochs 200: the config.",
            uncertain="8 GPUs × 16 images assumed (the file name's bs128): 391 iterations per"
            " epoch.",
            build=_mmengine(
                0.1,
                [{"type": "MultiStepLR", "by_epoch": True, "milestones": [100, 150], "gamma": 0.1}],
                200,
            ),
        ),
        CatalogEntry(
            name="timm_seresnext26t",
            framework="timm",
            dataset="imagenet",
            title="SE-ResNeXt-26-T, timm (SGD = Nesterov)",
            citation="huggingface/pytorch-image-models docs/training_hparam_examples.md,"
            " 'SE-ResNeXt-26-D and SE-ResNeXt-26-T'.",
            convention="pytorch",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            batch_size=224,
            epochs=160,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 2) // 112,
            schedule="warmup from 1e-5 over 5 epochs, cosine to 0 over 160 epochs, per epoch;"
            " timm's default --opt sgd is Nesterov",
            verified="distributed_train.sh 2 ... --lr 0.1 --warmup-epochs 5 --epochs 160"
            " --weight-decay 1e-4 --sched cosine -b 112: the docs' command; train.py defaults"
            " and create_scheduler_v2.",
            uncertain="train.py's defaults of today (warmup_lr 1e-5, momentum 0.9) are assumed"
            " for the 2019 command; 2 GPUs × 112, the last partial batch dropped.",
            build=_timm(
                {
                    "lr": 0.1,
                    "warmup_epochs": 5,
                    "epochs": 160,
                    "weight_decay": 1e-4,
                    "sched": "cosine",
                }
            ),
        ),
        CatalogEntry(
            name="timm_resnext50",
            framework="timm",
            dataset="imagenet",
            title="ResNeXt-50 32x4d, timm (SGD = Nesterov)",
            citation="huggingface/pytorch-image-models docs/training_hparam_examples.md,"
            " 'ResNeXt-50 32x4d w/ RandAugment'.",
            convention="pytorch",
            lr=0.6,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            batch_size=1536,
            epochs=240,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 8) // 192,
            schedule="warmup over 5 epochs, cosine over 240 epochs, lr 0.6 for 8 × 192 images",
            verified="distributed_train.sh 8 ... --lr 0.6 --warmup-epochs 5 --epochs 240"
            " --weight-decay 1e-4 --sched cosine -b 192: the docs' command.",
            uncertain="As timm_seresnext26t: today's defaults; 834 updates per epoch per process.",
            build=_timm(
                {
                    "lr": 0.6,
                    "warmup_epochs": 5,
                    "epochs": 240,
                    "weight_decay": 1e-4,
                    "sched": "cosine",
                }
            ),
        ),
        CatalogEntry(
            name="timm_resnet50_augmix",
            framework="timm",
            dataset="imagenet",
            title="ResNet-50 with AugMix + JSD, timm (SGD = Nesterov)",
            citation="huggingface/pytorch-image-models docs/training_hparam_examples.md,"
            " 'ResNet50 with JSD loss and RandAugment'; Hendrycks et al. (2020), 'AugMix', ICLR.",
            convention="pytorch",
            lr=0.05,
            momentum=0.9,
            weight_decay=2e-5,
            nesterov=True,
            batch_size=128,
            epochs=200,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 2) // 64,
            schedule="warmup over 5 epochs (train.py default), cosine over 200 epochs",
            verified="distributed_train.sh 2 /imagenet -b 64 --model resnet50 --sched cosine"
            " --epochs 200 --lr 0.05: the docs' command; no --weight-decay, so train.py's default.",
            uncertain="The weight decay and warmup are train.py's defaults of today (2e-5, 5"
            " epochs); the 2019 script's defaults were different (1e-4, 3 epochs).",
            build=_timm({"lr": 0.05, "epochs": 200, "sched": "cosine"}),
        ),
        CatalogEntry(
            name="resnext_imagenet",
            framework="torch7",
            dataset="imagenet",
            title="ResNeXt on ImageNet (Torch7)",
            citation="Xie, Girshick, Dollár, Tu & He (2017), 'Aggregated Residual Transformations"
            " for Deep Neural Networks', CVPR, section 4; facebookresearch/ResNeXt train.lua.",
            convention="torch7",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0001,
            nesterov=True,
            batch_size=256,
            epochs=100,
            steps_per_epoch=math.ceil(IMAGENET_TRAIN / 256),
            schedule="0.1·0.1^⌊(epoch−1)/30⌋ at the start of each 1-based epoch, 100 epochs",
            verified="train.lua: optim.sgd nesterov = true, dampening 0, learningRate"
            " 0.1·0.1^floor((epoch-1)/30) for imagenet; opts.lua: LR 0.1, momentum 0.9,"
            " weightDecay 1e-4, nEpochs 100 for imagenet.",
            uncertain="Batch 256 (8 GPUs) is the paper's; opts.lua's default is 32.",
            build=_epoch_decays(100, (31, 61, 91), 0.1),
        ),
        CatalogEntry(
            name="resnext_cifar",
            framework="torch7",
            dataset="cifar10",
            title="ResNeXt-29 on CIFAR (Torch7)",
            citation="Xie et al. (2017), 'Aggregated Residual Transformations ...', CVPR, section"
            " 5.3; facebookresearch/ResNeXt train.lua.",
            convention="torch7",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0005,
            nesterov=True,
            batch_size=128,
            epochs=300,
            steps_per_epoch=math.ceil(CIFAR_TRAIN / 128),
            schedule="0.1, ×0.1 when epoch/300 > 0.49 (epoch 148) and > 0.74 (epoch 223)",
            verified="train.lua: decay = (epoch/nEpochs) > 0.74 and 2 or (epoch/nEpochs) > 0.49"
            " and 1 or 0; opts.lua nEpochs 300 for cifar; README's -weightDecay 5e-4"
            " -batchSize 128.",
            uncertain="The weight decay 5e-4 and batch 128 are the README's command, not defaults.",
            build=_epoch_decays(300, (148, 223), 0.1),
        ),
        CatalogEntry(
            name="caffe_cifar10_full",
            framework="caffe",
            dataset="cifar10",
            title="Caffe's CIFAR-10 full model (three solvers)",
            citation="BVLC/caffe examples/cifar10/cifar10_full_solver.prototxt, _lr1, _lr2 and"
            " train_full.sh.",
            convention="caffe",
            lr=0.001,
            momentum=0.9,
            weight_decay=0.004,
            batch_size=100,
            epochs=140,
            steps_per_epoch=CIFAR_TRAIN // 100,
            schedule="0.001 to iteration 60k, 0.0001 to 65k, 0.00001 to 70k (fixed policy, three"
            " solvers resumed from snapshots)",
            verified="base_lr 0.001/0.0001, lr_policy fixed, momentum 0.9, weight_decay 0.004,"
            " max_iter 60000/65000: the solver files ('reduce learning rate after 120 epochs"
            " (60000 iters) by factor of 10, then another factor of 10 after 10 more epochs').",
            uncertain="The third solver (_lr2, 0.00001 to 70000) was not re-read here; batch 100"
            " is cifar10_full_train_test.prototxt's.",
            build=_caffe_stages(((0.001, 60000), (0.0001, 65000), (0.00001, 70000))),
        ),
        CatalogEntry(
            name="caffe_lenet",
            framework="caffe",
            dataset="mnist",
            title="LeNet on MNIST (Caffe example)",
            citation="BVLC/caffe examples/mnist/lenet_solver.prototxt.",
            convention="caffe",
            lr=0.01,
            momentum=0.9,
            weight_decay=0.0005,
            batch_size=64,
            epochs=10000 * 64 / 60000,
            steps_per_epoch=math.ceil(60000 / 64),
            schedule='lr_policy "inv": 0.01·(1 + 0.0001·iter)^(−0.75), 10k iterations',
            verified="base_lr 0.01, momentum 0.9, weight_decay 0.0005, lr_policy inv, gamma"
            " 0.0001, power 0.75, max_iter 10000: the solver file.",
            uncertain="Batch 64 is lenet_train_test.prototxt's (not re-read here).",
            build=lambda spe: (schedules.CaffeInv(gamma=0.0001, power=0.75), Constant(), 10000),
        ),
    ]


ENTRIES: dict[str, CatalogEntry] = {entry.name: entry for entry in _entries()}


def _choices(values: set[str]) -> str:
    return ", ".join(sorted(values))


def select(
    framework: str | None = None, convention: str | None = None, dataset: str | None = None
) -> list[CatalogEntry]:
    """The entries run with ``framework``, written in ``convention``, trained on ``dataset``
    (each ``None`` for any; case-insensitive; ``dataset`` matches one of an entry's
    ``/``-separated data sets).

    Raises:
        RecipeError: a value no entry has (the message lists those the catalog has).
    """
    entries = list(ENTRIES.values())
    wanted = {
        "framework": (framework, lambda e: {e.framework}),
        "convention": (convention, lambda e: {e.convention}),
        "dataset": (dataset, lambda e: set(e.dataset.split("/"))),
    }
    for label, (value, of) in wanted.items():
        if value is None:
            continue
        known = set().union(*(of(e) for e in ENTRIES.values()))
        if value.lower() not in known:
            raise RecipeError(
                f"no recipe has {label} {value!r}; the catalog has {_choices(known)}."
            )
        entries = [e for e in entries if value.lower() in of(e)]
    return entries


def get(name: str) -> CatalogEntry:
    """The catalog entry called ``name``.

    Raises:
        RecipeError: no such entry (the message lists the names).
    """
    try:
        return ENTRIES[name]
    except KeyError:
        raise RecipeError(
            f"unknown recipe {name!r}; the catalog has {', '.join(ENTRIES)}."
        ) from None
