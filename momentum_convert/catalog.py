"""Published SGD-momentum recipes, each in the convention it was run in.

A :class:`CatalogEntry` records what a paper or its official code states: the citation,
the convention (who put the learning rate where), batch size, epochs, the schedule at the
exact step index of the framework that ran it, what was checked and where, and what is
uncertain. :meth:`CatalogEntry.recipe` builds the :class:`~momentum_convert.recipe.Recipe`
for a given number of optimizer steps per epoch, ready for
:func:`momentum_convert.conversion.convert`. Use :func:`get` and :data:`ENTRIES`.

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


def _entries() -> list[CatalogEntry]:
    return [
        CatalogEntry(
            name="alexnet2012",
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
    ]


ENTRIES: dict[str, CatalogEntry] = {entry.name: entry for entry in _entries()}


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
