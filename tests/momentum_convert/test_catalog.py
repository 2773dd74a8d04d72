"""Each catalog recipe's per-step schedule against the numbers its source states.

The expected values are written out from the paper or the official script (cited in each
test), never computed by the catalog's own builders.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from momentum_convert import catalog
from momentum_convert.conventions import resolve
from momentum_convert.conversion import convert
from momentum_convert.errors import RecipeError


@pytest.mark.parametrize("name", list(catalog.ENTRIES))
def test_every_entry_names_its_source_convention_and_uncertainty(name: str) -> None:
    entry = catalog.get(name)
    for text in (entry.citation, entry.verified, entry.uncertain, entry.schedule):
        assert text.strip()
    assert resolve(entry.convention).name  # a registered convention
    assert entry.batch_size >= 1
    assert entry.framework.strip()
    assert entry.dataset.strip()
    described = entry.describe()
    assert described["name"] == name
    assert described["citation"] == entry.citation


def test_the_catalog_holds_at_least_thirty_recipes_from_several_frameworks() -> None:
    assert len(catalog.ENTRIES) >= 30
    frameworks = {entry.framework for entry in catalog.ENTRIES.values()}
    assert {
        "caffe",
        "torch7",
        "gluoncv",
        "mxnet",
        "detectron",
        "detectron2",
        "mmengine",
        "timm",
    } <= frameworks


def test_unknown_recipe_lists_the_catalog() -> None:
    with pytest.raises(RecipeError, match=r"unknown recipe 'resnet'.*goyal2017"):
        catalog.get("resnet")


def test_steps_per_epoch_must_be_positive() -> None:
    with pytest.raises(RecipeError, match="steps per epoch"):
        catalog.get("goyal2017").recipe(steps_per_epoch=0)


def test_alexnet_starts_at_001_and_is_divided_by_ten_three_times() -> None:
    # Krizhevsky et al. 2012, section 5: ε = 0.01, ÷10 three times, batch 128, ~90 epochs.
    recipe = catalog.get("alexnet2012").recipe(steps_per_epoch=100)
    lr = recipe.lr_per_step()
    assert recipe.convention == "sutskever"
    assert (recipe.momentum, recipe.weight_decay, recipe.steps) == (0.9, 0.0005, 9000)
    assert lr[0] == 0.01
    levels = [lr[0], *lr[1:][np.diff(lr) != 0]]
    np.testing.assert_allclose(levels, [0.01, 0.001, 0.0001, 0.00001], rtol=1e-12)


def test_sutskever_momentum_is_half_then_three_quarters_then_ninety_percent() -> None:
    # Sutskever et al. 2013, eq. (5): 0.5 for t < 250, 0.75, 0.8333, 0.875, 0.9 at t = 1000.
    mu = catalog.get("sutskever2013").recipe().momentum_per_step()
    assert set(mu[:250]) == {0.5}
    assert mu[250] == 0.75
    assert mu[500] == pytest.approx(0.8333333333333334)
    assert mu[750] == 0.875
    assert mu[1000] == 0.9
    assert mu.max() == 0.999  # μ_max caps it


def test_resnet_cifar10_divides_at_32k_and_48k_and_stops_at_64k() -> None:
    # He et al. 2016, section 4.2: lr 0.1, ÷10 at 32k and 48k iterations, terminate at 64k.
    for spe in (None, 100):
        recipe = catalog.get("resnet_cifar10").recipe(steps_per_epoch=spe)
        lr = recipe.lr_per_step()
        assert recipe.steps == 64_000
        assert lr[31_999] == 0.1
        assert lr[32_000] == pytest.approx(0.01)
        assert lr[47_999] == pytest.approx(0.01)
        assert lr[48_000] == pytest.approx(0.001)
        assert (recipe.momentum, recipe.weight_decay) == (0.9, 0.0001)


def test_resnet_imagenet_runs_600k_iterations_from_01() -> None:
    # He et al. 2016, section 3.4: lr 0.1, batch 256, up to 60×10^4 iterations, λ = 1e-4.
    recipe = catalog.get("resnet_imagenet").recipe()
    assert recipe.steps == 600_000
    assert recipe.lr_per_step()[0] == 0.1
    assert catalog.get("resnet_imagenet").batch_size == 256


def test_goyal_warms_up_linearly_to_32_then_divides_at_30_60_80() -> None:
    # Goyal et al. 2017: η = 0.1·8192/256 = 3.2, warmup from 0.1 over 5 epochs with a
    # constant increment, ÷10 at epochs 30, 60, 80, 90 epochs.
    spe = 100
    recipe = catalog.get("goyal2017").recipe(steps_per_epoch=spe)
    lr = recipe.lr_per_step()
    assert recipe.steps == 90 * spe
    assert lr[0] == pytest.approx(0.1)
    increments = np.diff(lr[: 5 * spe + 1])
    np.testing.assert_allclose(increments, (3.2 - 0.1) / (5 * spe), rtol=1e-9)
    assert lr[5 * spe] == pytest.approx(3.2)
    assert lr[30 * spe - 1] == pytest.approx(3.2)
    assert lr[30 * spe] == pytest.approx(0.32)
    assert lr[60 * spe] == pytest.approx(0.032)
    assert lr[80 * spe] == pytest.approx(0.0032)


def test_goyal_momentum_correction_is_exactly_pytorch_momentum_09() -> None:
    # Goyal et al. eq. (10): Form S with μ·η_t/η_(t-1) is Form P with μ = 0.9.
    conversion = convert(catalog.get("goyal2017").recipe(steps_per_epoch=20), "pytorch")
    assert conversion.verdict.value == "exact"
    np.testing.assert_allclose(conversion.momentum, 0.9, rtol=1e-12)


def test_bvlc_alexnet_solver_steps_every_100k_iterations() -> None:
    # models/bvlc_alexnet/solver.prototxt: base_lr 0.01, step, gamma 0.1, stepsize 100000.
    recipe = catalog.get("caffe_alexnet").recipe()
    lr = recipe.lr_per_step()
    assert recipe.steps == 450_000
    assert (lr[99_999], lr[100_000], lr[449_999]) == pytest.approx((0.01, 0.001, 0.000001))


def test_bvlc_googlenet_solver_loses_4_percent_every_320k_iterations() -> None:
    # models/bvlc_googlenet/solver.prototxt: base_lr 0.01, gamma 0.96, stepsize 320000.
    recipe = catalog.get("caffe_googlenet").recipe()
    lr = recipe.lr_schedule.values(recipe.lr or 0.0, 640_001)
    assert recipe.steps == 10_000_000
    assert (lr[319_999], lr[320_000], lr[640_000]) == pytest.approx((0.01, 0.0096, 0.009216))
    assert recipe.weight_decay == 0.0002


def test_fb_resnet_imagenet_divides_every_30_epochs_with_nesterov() -> None:
    # fb.resnet.torch train.lua: LR·0.1^floor((epoch-1)/30), nesterov, dampening 0; 90 epochs.
    recipe = catalog.get("fb_resnet_imagenet").recipe(steps_per_epoch=10)
    lr = recipe.lr_per_step()
    assert recipe.steps == 900
    assert recipe.nesterov
    assert (recipe.dampening, recipe.convention) == (0.0, "torch7")
    assert (lr[299], lr[300], lr[599], lr[600], lr[899]) == pytest.approx(
        (0.1, 0.01, 0.01, 0.001, 0.001)
    )


def test_fb_resnet_cifar_divides_from_epochs_81_and_122() -> None:
    # fb.resnet.torch train.lua: decay = epoch >= 122 and 2 or epoch >= 81 and 1; 164 epochs.
    recipe = catalog.get("fb_resnet_cifar10").recipe(steps_per_epoch=10)
    lr = recipe.lr_per_step()
    assert recipe.steps == 1640
    assert (lr[799], lr[800], lr[1209], lr[1210]) == pytest.approx((0.1, 0.01, 0.01, 0.001))


def test_wide_resnet_multiplies_by_02_at_epochs_60_120_160() -> None:
    # wide-residual-networks scripts/train_cifar.sh: 0.1, ratio 0.2 at {60,120,160}, 200 epochs.
    recipe = catalog.get("wide_resnet_cifar").recipe(steps_per_epoch=10)
    lr = recipe.lr_per_step()
    assert recipe.steps == 2000
    assert (recipe.weight_decay, recipe.nesterov) == (0.0005, True)
    assert (lr[589], lr[590], lr[1190], lr[1590]) == pytest.approx((0.1, 0.02, 0.004, 0.0008))


def test_densenet_divides_at_50_and_75_percent_of_300_epochs() -> None:
    # DenseNet train.lua: epoch >= 0.75·nEpochs -> 2, >= 0.5·nEpochs -> 1; batch 64, 300 epochs.
    recipe = catalog.get("densenet_cifar").recipe(steps_per_epoch=10)
    lr = recipe.lr_per_step()
    assert recipe.steps == 3000
    assert (lr[1489], lr[1490], lr[2239], lr[2240]) == pytest.approx((0.1, 0.01, 0.01, 0.001))


def test_sgdr_matches_the_sgdr_wrns_script_batch_by_batch() -> None:
    # loshchil/SGDR SGDR_WRNs.py, scenario 6, its training loop transcribed: the rate a batch
    # uses is the one set after the previous batch.
    sh_lr, tt, te, te_next, used = 0.05, 0.0, 10.0, 10.0, []
    for epoch in range(200):
        for _ in range(len(range(0, 100_000 - 128 + 1, 128))):
            used.append(sh_lr)
            dt = 2.0 * math.pi / float(2.0 * te)
            tt = tt + float(dt) / (100_000 / float(128))
            if tt >= math.pi:
                tt = tt - math.pi
            sh_lr = 0.05 * (1.0 + math.sin(math.pi / 2.0 + tt)) / 2.0
        if epoch + 1 == te_next:
            tt = 0
            te = te * 2
            te_next = te_next + te
    recipe = catalog.get("sgdr_wrn").recipe()
    assert recipe.steps == len(used) == 156_200
    np.testing.assert_allclose(recipe.lr_per_step(), used, rtol=1e-9, atol=1e-15)


# ---- the recipe command ----------------------------------------------------------------


def invoke(*argv: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from momentum_convert.cli import cli
    from momentum_convert.cli_recipes import commands

    for command in commands:  # until momentum_convert.cli lists cli_recipes
        if command.name not in cli.commands:
            cli.add_command(command)
    result = CliRunner().invoke(cli, list(argv))
    return result.exit_code, result.stdout, result.stderr


def test_recipe_list_shows_every_entry() -> None:
    code, out, _ = invoke("recipe", "list")
    assert code == 0
    for name in catalog.ENTRIES:
        assert name in out
    code, out, _ = invoke("recipe", "list", "--format", "json")
    assert [item["name"] for item in json.loads(out)] == list(catalog.ENTRIES)


def test_recipe_show_prints_source_and_exact_conversion() -> None:
    code, out, _ = invoke("recipe", "show", "resnet_cifar10", "--to", "pytorch")
    assert code == 0
    assert "He, Zhang, Ren & Sun (2016)" in out
    assert "Uncertain:" in out
    assert "step 32001" in out


def test_recipe_show_json_carries_the_convert_contract_and_the_entry() -> None:
    code, out, _ = invoke(
        "recipe",
        "show",
        "wide_resnet_cifar",
        "--to",
        "sutskever",
        "--steps-per-epoch",
        "10",
        "--format",
        "json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["recipe"]["name"] == "wide_resnet_cifar"
    assert data["steps"] == 2000
    assert data["verdict"] == "exact-with-state-rescaling"  # Nesterov across the cuts
    assert data["per_step"]["lr"][590] == pytest.approx(0.02)


def test_recipe_show_python_is_runnable_pytorch_code() -> None:
    code, out, _ = invoke("recipe", "show", "goyal2017", "--to", "pytorch", "--format", "python")
    assert code == 0
    compile(out, "goyal2017.py", "exec")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        (
            "--framework",
            "detectron2",
            {"detectron2_mask_rcnn_1x", "detectron2_mask_rcnn_3x", "detectron2_retinanet_1x"},
        ),
        ("--dataset", "mnist", {"sutskever2013", "caffe_lenet"}),
        (
            "--convention",
            "MXNET",
            {
                "he2019_baseline",
                "he2019_tricks",
                "gluoncv_resnet50_v1",
                "gluoncv_vgg16",
                "gluoncv_mobilenetv2",
                "gluoncv_cifar_resnet20",
                "mxnet_resnet50_imagenet",
                "mxnet_resnet110_cifar10",
            },
        ),
    ],
)
def test_recipe_list_filters_by_framework_dataset_and_convention(
    option: str, value: str, expected: set[str]
) -> None:
    code, out, err = invoke("recipe", "list", option, value, "--format", "json")
    assert code == 0, err
    assert {item["name"] for item in json.loads(out)} == expected


def test_recipe_list_filters_combine_and_unknown_values_exit_2() -> None:
    code, out, _ = invoke(
        "recipe", "list", "--convention", "caffe", "--dataset", "cifar10", "--format", "json"
    )
    assert code == 0
    assert {item["name"] for item in json.loads(out)} == {"resnet_cifar10", "caffe_cifar10_full"}
    code, out, err = invoke("recipe", "list", "--framework", "keras")
    assert code == 2
    assert "no recipe has framework 'keras'" in err
    assert "detectron2" in err
    assert out == ""


def test_recipe_show_unknown_name_and_bad_steps_per_epoch_exit_2() -> None:
    code, _, err = invoke("recipe", "show", "vgg", "--to", "pytorch")
    assert code == 2
    assert "unknown recipe 'vgg'" in err
    code, _, err = invoke(
        "recipe", "show", "goyal2017", "--to", "pytorch", "--steps-per-epoch", "0"
    )
    assert code == 2
    assert "--steps-per-epoch" in err


# ---- the model-zoo recipes --------------------------------------------------------------
# Values written out from each source's numbers; the step index is the framework's (cited).


def lr_at(name: str, *steps: int, spe: int | None = None) -> list[float]:
    values = catalog.get(name).recipe(spe).lr_per_step()
    return [float(values[step - 1]) for step in steps]


def test_bag_of_tricks_baseline_divides_on_the_last_update_of_epochs_30_60_90() -> None:
    # He et al. 2019 section 2.2: 0.1, ÷10 at epochs 30, 60, 90, 120 epochs; GluonCV's
    # LRSequential counts s <= T = num_update - offset, so update 30·5004 already has 0.01.
    e = 1281167 // 256
    got = lr_at("he2019_baseline", 1, 30 * e - 1, 30 * e, 60 * e, 90 * e, 120 * e)
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.001, 0.0001, 0.0001], rel=1e-12)
    assert catalog.get("he2019_baseline").recipe().nesterov


def test_bag_of_tricks_warms_up_from_zero_over_5_epochs_then_cosine_to_zero() -> None:
    # resnet50_v1d.sh: lr 0.4, 5 warmup epochs of ⌊1281167/1024⌋ = 1251 updates, cosine to 0.
    w, n = 5 * 1251, 115 * 1251
    got = lr_at("he2019_tricks", 1, w - 1, w, w + n // 2, w + n - 1, w + n)
    expected = [
        0.4 * 1 / (w - 1),
        0.4,
        0.4,
        0.4 * (1 + math.cos(math.pi * (n // 2) / (n - 1))) / 2,
        0.0,
        0.0,
    ]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-18)


def test_gluoncv_mobilenetv2_loses_2_percent_each_epoch() -> None:
    e = 1281167 // 160
    got = lr_at("gluoncv_mobilenetv2", 1, e - 1, e, 10 * e, 480 * e)
    assert got == pytest.approx([0.045, 0.045, 0.045 * 0.98, 0.045 * 0.98**10, 0.045 * 0.98**479])


def test_gluoncv_cifar_and_vgg16_decay_at_their_listed_epochs() -> None:
    got = lr_at("gluoncv_cifar_resnet20", 100 * 390, 100 * 390 + 1, 150 * 390 + 1, 200 * 390)
    assert got == pytest.approx([0.1, 0.01, 0.001, 0.001])
    e = 1281167 // 256
    assert lr_at("gluoncv_vgg16", 50 * e - 1, 50 * e, 80 * e) == pytest.approx([0.01, 0.001, 1e-4])
    got = lr_at("gluoncv_resnet50_v1", 30 * e - 1, 30 * e, 60 * e, 90 * e, 150 * e)
    assert got == pytest.approx([0.1, 0.01, 0.001, 0.0001, 0.0001])


def test_mxnet_examples_decay_after_the_listed_epochs() -> None:
    # fit.py: MultiFactorScheduler(step=[epoch_size·e]) decays once num_update > step.
    e = math.ceil(1281167 / 128)
    got = lr_at("mxnet_resnet50_imagenet", 30 * e, 30 * e + 1, 60 * e + 1, 80 * e)
    assert got == pytest.approx([0.1, 0.01, 0.001, 0.001])
    e = math.ceil(50000 / 128)
    got = lr_at("mxnet_resnet110_cifar10", 200 * e, 200 * e + 1, 250 * e + 1, 300 * e)
    assert got == pytest.approx([0.05, 0.005, 0.0005, 0.0005])


def test_detectron_mask_rcnn_warms_up_from_a_third_and_rescales_history_at_the_cuts() -> None:
    recipe = catalog.get("detectron_mask_rcnn_1x").recipe()
    lr, mu = recipe.lr_per_step(), recipe.momentum_per_step()
    assert recipe.steps == 90000
    assert lr[0] == pytest.approx(0.02 / 3, rel=1e-7)  # float32
    assert lr[500] == pytest.approx(0.02, rel=1e-7)
    assert lr[60000] == pytest.approx(0.002, rel=1e-7)
    assert lr[80000] == pytest.approx(0.0002, rel=1e-6)
    assert mu[60000] == pytest.approx(0.09, rel=1e-6)  # SCALE_MOMENTUM: history × 0.1
    assert mu[80000] == pytest.approx(0.09, rel=1e-6)
    assert np.count_nonzero(mu != 0.9) == 2
    assert convert(recipe, "pytorch").momentum[60000] == pytest.approx(0.9, rel=1e-6)


def test_detectron2_schedules_warm_up_1000_iterations_from_a_thousandth() -> None:
    got = lr_at("detectron2_mask_rcnn_3x", 1, 501, 1001, 210000, 210001, 250001, 270000)
    expected = [2e-5, 0.02 * (0.001 + 0.999 * 0.5), 0.02, 0.02, 0.002, 0.0002, 0.0002]
    assert got == pytest.approx(expected, rel=1e-12)
    got = lr_at("detectron2_retinanet_1x", 1, 1001, 60000, 60001, 80001)
    assert got == pytest.approx([1e-5, 0.01, 0.01, 0.001, 0.0001], rel=1e-12)
    assert catalog.get("detectron2_mask_rcnn_1x").recipe().steps == 90000
    got = lr_at("detectron2_mask_rcnn_1x", 1, 1001, 60000, 60001, 80001, 90000)
    assert got == pytest.approx([2e-5, 0.02, 0.02, 0.002, 0.0002, 0.0002], rel=1e-12)


def test_mmdet_1x_warms_up_500_iterations_and_decays_after_epochs_8_and_11() -> None:
    e = 7330
    got = lr_at("mmdet_schedule_1x", 1, 500, 501, 8 * e, 8 * e + 1, 11 * e + 1, 12 * e)
    assert got == pytest.approx(
        [2e-5, 0.02 * (0.001 + 0.999 * 499 / 499), 0.02, 0.02, 0.002, 0.0002, 0.0002]
    )
    assert lr_at("mmdet_schedule_1x", 250)[0] == pytest.approx(0.02 * (0.001 + 0.999 * 249 / 499))


def test_mmpretrain_schedules_decay_after_their_milestone_epochs() -> None:
    e = 5005
    got = lr_at("mmpretrain_resnet50_imagenet", 30 * e, 30 * e + 1, 60 * e + 1, 90 * e + 1)
    assert got == pytest.approx([0.1, 0.01, 0.001, 0.0001])
    got = lr_at("mmpretrain_resnet_cifar10", 100 * 391, 100 * 391 + 1, 150 * 391 + 1)
    assert got == pytest.approx([0.1, 0.01, 0.001])


def test_timm_recipes_warm_up_per_epoch_then_follow_the_cosine() -> None:
    # CosineLRScheduler: warmup_lr 1e-5 + t·(lr − 1e-5)/5 for epoch t < 5, then
    # 0.5·lr·(1 + cos(π t/T)); train.py sets epoch t's value before it starts.
    e = 10
    got = lr_at("timm_seresnext26t", 1, e, e + 1, 5 * e + 1, 80 * e + 1, 160 * e, spe=e)
    expected = [
        1e-5,
        1e-5,
        1e-5 + (0.1 - 1e-5) / 5,
        0.05 * (1 + math.cos(math.pi * 5 / 160)),
        0.05 * (1 + math.cos(math.pi / 2)),
        0.05 * (1 + math.cos(math.pi * 159 / 160)),
    ]
    assert got == pytest.approx(expected, rel=1e-12)
    assert catalog.get("timm_seresnext26t").recipe(e).nesterov  # --opt sgd is Nesterov
    assert catalog.get("timm_resnet50_augmix").recipe(e).steps == 200 * e
    got = lr_at("timm_resnet50_augmix", 1, 3 * e + 1, 100 * e + 1, spe=e)
    assert got == pytest.approx(
        [1e-5, 1e-5 + 3 * (0.05 - 1e-5) / 5, 0.025 * (1 + math.cos(math.pi / 2))]
    )
    got = lr_at("timm_resnext50", 5 * e + 1, spe=e)
    assert got == pytest.approx([0.3 * (1 + math.cos(math.pi * 5 / 240))])


def test_resnext_decays_at_epochs_31_61_91_on_imagenet_and_148_223_on_cifar() -> None:
    e = math.ceil(1281167 / 256)
    got = lr_at("resnext_imagenet", 30 * e, 30 * e + 1, 60 * e + 1, 90 * e + 1, 100 * e)
    assert got == pytest.approx([0.1, 0.01, 0.001, 0.0001, 0.0001])
    e = math.ceil(50000 / 128)
    got = lr_at("resnext_cifar", 147 * e, 147 * e + 1, 222 * e, 222 * e + 1, 300 * e)
    assert got == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])


def test_caffe_examples_follow_their_solver_files() -> None:
    got = lr_at("caffe_cifar10_full", 1, 60000, 60001, 65000, 65001, 70000)
    assert got == pytest.approx([0.001, 0.001, 0.0001, 0.0001, 0.00001, 0.00001])
    assert catalog.get("caffe_cifar10_full").recipe().steps == 70000
    got = lr_at("caffe_lenet", 1, 10000)
    assert got == pytest.approx([0.01, 0.01 * (1 + 0.0001 * 9999) ** -0.75])


@pytest.mark.parametrize(
    ("name", "kind", "path", "spe"),
    [
        ("he2019_tricks", "gluoncv", "gluoncv_resnet50_v1d.sh", None),
        ("gluoncv_resnet50_v1", "gluoncv", "gluoncv_resnet50_v1.sh", None),
        ("gluoncv_mobilenetv2", "gluoncv", "gluoncv_mobilenetv2_1.0.sh", None),
        ("gluoncv_cifar_resnet20", "gluoncv", "gluoncv_cifar_resnet20_v1.sh", None),
        ("mxnet_resnet50_imagenet", "mxnet", "mxnet_train_imagenet.py", None),
        ("mxnet_resnet110_cifar10", "mxnet", "mxnet_train_cifar10.py", None),
        ("detectron_mask_rcnn_1x", "detectron", "detectron_e2e_mask_rcnn_R-50-FPN_1x.yaml", None),
        (
            "detectron2_mask_rcnn_3x",
            "detectron2",
            "detectron2/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
            None,
        ),
        ("mmdet_schedule_1x", "mmengine", "mmengine/schedule_1x.py", 7330),
        ("mmpretrain_resnet50_imagenet", "mmengine", "mmengine/imagenet_bs256.py", 5005),
        ("mmpretrain_resnet_cifar10", "mmengine", "mmengine/cifar10_bs128.py", 391),
        ("timm_seresnext26t", "timm", "timm_seresnext26t_32x4d.sh", 5719),
        ("timm_resnext50", "timm", "timm_resnext50_32x4d.sh", 834),
        ("timm_resnet50_augmix", "timm", "timm_resnet50_augmix.sh", 10009),
    ],
)
def test_model_zoo_entries_are_their_real_files_as_the_importers_read_them(
    name: str, kind: str, path: str, spe: int | None
) -> None:
    """The importers are checked against each framework in tests/momentum_convert/importers."""
    from pathlib import Path

    from momentum_convert.importers import load

    data = Path(__file__).resolve().parents[1] / "data" / "recipes"
    entry = catalog.get(name)
    recipe = entry.recipe()
    imported = load(kind, data / path, steps_per_epoch=spe).recipe
    assert entry.steps_per_epoch == spe or spe is None
    assert recipe.steps == imported.steps
    np.testing.assert_array_equal(recipe.lr_per_step(), imported.lr_per_step())
    np.testing.assert_array_equal(recipe.momentum_per_step(), imported.momentum_per_step())
    assert (recipe.convention, recipe.nesterov) == (imported.convention, imported.nesterov)
    assert recipe.weight_decay == imported.weight_decay


def catalog_table_rows() -> list[str]:
    """docs/recipes.md's catalog table, one row per entry, from the catalog itself."""
    rows = []
    for e in catalog.ENTRIES.values():
        epochs = "—" if e.epochs is None else f"{e.epochs:.4g}"
        convention = e.convention + (", Nesterov" if e.nesterov else "")
        cells = [
            f"`{e.name}`",
            e.title,
            e.framework,
            convention,
            e.dataset,
            f"{e.lr:g}",
            str(e.batch_size),
            epochs,
            e.citation,
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return rows


def test_docs_catalog_table_is_the_catalog() -> None:
    """docs/recipes.md lists every entry with the values `recipe list` prints."""
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "recipes.md"
    lines = page.read_text().splitlines()
    header = lines.index(
        "| name | recipe | framework | convention | data set | lr | batch | epochs | source |"
    )
    documented = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        documented.append(line)
    assert documented == catalog_table_rows()


@pytest.mark.parametrize("name", [n for n in catalog.ENTRIES if n != "caffe_googlenet"])
def test_every_entry_converts_to_both_families(name: str) -> None:
    """caffe_googlenet's 10 million iterations are left to its own test (several seconds)."""
    recipe = catalog.get(name).recipe(10)
    for target in ("pytorch", "sutskever"):
        conversion = convert(recipe, target)
        assert conversion.lr.size == recipe.steps
        if name == "he2019_tricks" and target == "pytorch":
            # its last two updates have lr 0, where the lr-inside velocity still moves
            assert conversion.impossible_steps == (recipe.steps - 1, recipe.steps)
        else:
            assert conversion.verdict.value != "impossible", (name, target)
