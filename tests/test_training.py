"""Training engine and `vbmd train` on tiny phantoms (24 slices at 0.25 mm, a tiny U-Net on a 0.5 mm grid)."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from napari_vbmd.cli import main
from napari_vbmd.errors import VbmdError
from napari_vbmd.io import read_scan, write_mask
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
from napari_vbmd.segmentation.checkpoint import load_checkpoint
from napari_vbmd.segmentation.models import load
from napari_vbmd.segmentation.datasets import Pair, find_pairs, load_pair, prepare_case, split_by_patient
from napari_vbmd.segmentation.training import METRIC_COLUMNS, TrainSettings, epoch_lr, train

TINY = dict(n_slices=24, spacing_mm=0.25)


def tiny_settings(**changes) -> TrainSettings:
    settings = TrainSettings(
        architecture="unet2d_small", kwargs={"base": 4, "depth": 3}, spacing_mm=(0.5, 0.5, 0.5), epochs=2,
        steps_per_epoch=3, batch_size=4, lr=1e-3, patch=(48, 80), seed=3, name="tiny",
    )
    return dataclasses.replace(settings, **changes)


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory) -> Path:
    """Six one-case patients: right and left hands, one with motion, one with erosions."""
    folder = tmp_path_factory.mktemp("pairs")
    for k in range(6):
        spec = PhantomSpec(seed=40 + k, hand="left" if k % 2 else "right", motion_grade=2 if k == 4 else 0,
                           erosions=2 if k == 5 else 0, **TINY)
        write_phantom(generate_phantom(spec), folder, f"case{k}")
    return folder


@pytest.fixture(scope="session")
def trained(phantom_folder, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    summary = train(phantom_folder, out, tiny_settings(), device="cpu", show_progress=False)
    return out, summary


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- pairs ------------------------------------------------------------------------------------------


def test_find_pairs_in_a_folder_matches_masks_and_skips_lone_images(phantom_folder, tmp_path):
    pairs = find_pairs(phantom_folder)
    assert [p.case for p in pairs] == [f"case{k}" for k in range(6)]
    assert all(p.mask.name == f"{p.case}_mask.aim" for p in pairs)
    assert len({p.patient for p in pairs}) == 6

    # a GOBJ contour and a NIfTI mask are found by name; an image without a mask is skipped;
    # hand tags in the case name belong to one patient
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("p01_L.aim", "p01_L.gobj", "p01_R.aim", "p01_R_mask.nii.gz", "p02.aim", "lonely.aim"):
        (folder / name).write_bytes(b"x")
    (folder / "p02_mask.aim").write_bytes(b"x")
    found = {p.case: p for p in find_pairs(folder)}
    assert set(found) == {"p01_L", "p01_R", "p02"}
    assert found["p01_L"].mask.name == "p01_L.gobj"
    assert found["p01_R"].mask.name == "p01_R_mask.nii.gz"
    assert found["p01_L"].patient == found["p01_R"].patient == "p01"


def test_find_pairs_from_csv_with_patients_and_clear_errors(phantom_folder, tmp_path):
    table = tmp_path / "pairs.csv"
    rows = ["image,mask,patient"] + [f"{phantom_folder}/case{k}.aim,{phantom_folder}/case{k}_mask.aim,P{k // 2}"
                                     for k in range(6)]
    table.write_text("\n".join(rows) + "\n")
    pairs = find_pairs(table)
    assert [p.patient for p in pairs] == ["P0", "P0", "P1", "P1", "P2", "P2"]
    assert pairs[3].image == phantom_folder / "case3.aim"

    # paths in a CSV are relative to the CSV's folder
    relative = phantom_folder.parent / "relative.csv"
    relative.write_text(f"image,mask\n{phantom_folder.name}/case0.aim,{phantom_folder.name}/case0_mask.aim\n")
    assert find_pairs(relative)[0].mask == (phantom_folder / "case0_mask.aim").resolve()

    missing = tmp_path / "missing.csv"
    missing.write_text(f"image,mask\n{phantom_folder}/case0.aim,{phantom_folder}/nope_mask.aim\n")
    with pytest.raises(VbmdError, match="line 2: file not found"):
        find_pairs(missing)
    columns = tmp_path / "columns.csv"
    columns.write_text("scan,label\na.aim,b.aim\n")
    with pytest.raises(VbmdError, match="columns image and mask"):
        find_pairs(columns)
    with pytest.raises(VbmdError, match="no image/mask pairs"):
        find_pairs(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "only.aim").write_bytes(b"x")
    return folder


def test_masks_stored_cropped_or_as_nifti_are_aligned_by_geometry(phantom_folder, tmp_path):
    image = read_scan(phantom_folder / "case1.aim")
    truth = read_scan(phantom_folder / "case1_mask.aim", like=image, as_mask=True)
    inside = truth.data.astype(bool)
    zs, ys, xs = (np.flatnonzero(inside.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    z0, y0, x0 = int(zs[0]), int(ys[0]) - 2, int(xs[0]) - 3
    crop = truth.data[z0:, y0 : ys[-1] + 3, x0 : xs[-1] + 4]
    origin = tuple(o + i * s for o, i, s in zip(image.origin, (z0, y0, x0), image.spacing))
    cropped = truth.with_data(np.ascontiguousarray(crop), kind="mask", unit="unknown", origin=origin)
    write_mask(tmp_path / "cropped_mask.aim", cropped, parent=image)
    write_mask(tmp_path / "nifti_mask.nii.gz", truth, parent=image)
    assert read_scan(tmp_path / "cropped_mask.aim", as_mask=True).shape == crop.shape
    for mask_name in ("cropped_mask.aim", "nifti_mask.nii.gz"):
        _, aligned = load_pair(Pair("case1", phantom_folder / "case1.aim", tmp_path / mask_name, "p"))
        assert np.array_equal(aligned, inside), mask_name


def test_mismatched_masks_and_mask_images_are_refused_naming_the_pair(phantom_folder, tmp_path):
    other = generate_phantom(PhantomSpec(seed=7, n_slices=16, spacing_mm=0.3))
    write_phantom(other, tmp_path, "coarse")
    with pytest.raises(VbmdError, match="pair case0: mask coarse_mask.aim does not fit image case0.aim"):
        load_pair(Pair("case0", phantom_folder / "case0.aim", tmp_path / "coarse_mask.aim", "p"))
    with pytest.raises(VbmdError, match="the image is a mask"):
        load_pair(Pair("case0", phantom_folder / "case0_mask.aim", phantom_folder / "case0_mask.aim", "p"))


def test_left_hand_cases_are_prepared_mirrored_like_the_pipeline(phantom_folder):
    image, inside = load_pair(find_pairs(phantom_folder)[1])
    assert image.hand == "left"
    case = prepare_case(image, inside, (0.5, 0.5, 0.5), 2, 4.0, "case1")
    right = dataclasses.replace(image, hand="right")
    unmirrored = prepare_case(right, inside, (0.5, 0.5, 0.5), 2, 4.0, "case1")
    assert np.array_equal(case.mask, unmirrored.mask[..., ::-1])
    assert case.mask.shape[0] == image.shape[0]  # 2D: native slices kept
    assert 0 <= case.mask.min() and case.mask.max() <= 1


def test_split_by_patient_is_70_20_10_seeded_and_disjoint():
    pairs = [Pair(f"p{p:02d}_{hand}", Path(f"p{p:02d}_{hand}.aim"), Path("m.aim"), f"p{p:02d}")
             for p in range(20) for hand in ("L", "R")]
    split = split_by_patient(pairs, seed=5)
    patients = {name: {p.patient for p in members} for name, members in split.items()}
    assert [len(patients[n]) for n in ("train", "val", "test")] == [14, 4, 2]
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    assert sum(len(m) for m in split.values()) == 40  # both hands of a patient travel together
    again = split_by_patient(list(reversed(pairs)), seed=5)
    assert {n: {p.case for p in m} for n, m in again.items()} == {n: {p.case for p in m} for n, m in split.items()}
    other = split_by_patient(pairs, seed=6)
    assert {p.patient for p in other["test"]} != patients["test"] or {p.patient for p in other["val"]} != patients["val"]
    with pytest.raises(VbmdError, match="at least 2 patients"):
        split_by_patient(pairs[:2], seed=0)


# -- training -----------------------------------------------------------------------------------------


def test_training_writes_metrics_per_epoch_and_the_best_checkpoint(trained):
    out, summary = trained
    rows = read_metrics(out / "metrics.csv")
    assert list(rows[0]) == METRIC_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        for key in ("val_dice", "val_iou", "val_accuracy"):
            assert 0.0 <= float(row[key]) <= 1.0
        assert 0.0 <= float(row["val_auc"]) <= 1.0
        assert float(row["train_loss"]) > 0
    dices = [float(r["val_dice"]) for r in rows]
    best_epoch = int(np.argmax(dices)) + 1
    assert summary["best_epoch"] == best_epoch
    _, config = load_checkpoint(out / "best.json", device="cpu")
    assert config.training["epoch"] == best_epoch
    assert config.training["val_metrics"]["dice"] == pytest.approx(max(dices), abs=1e-5)
    assert config.name == "tiny" and config.spacing_mm == (0.5, 0.5, 0.5)
    assert config.std > 0 and config.training["loss"] == "dice"
    env = config.training["environment"]  # what a failed reproduction needs to know
    import scipy
    assert (env["torch"], env["numpy"], env["scipy"]) == (torch.__version__, np.__version__, scipy.__version__)
    assert env["torch_threads"] >= 1 and env["device"] == "cpu" and env["python"].count(".") == 2
    assert env["code"] is None or len(env["code"].split("+")[0]) == 40

    split = json.loads((out / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (4, 1, 1)
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    assert summary["n_cases"] == {"train": 4, "val": 1, "test": 1}


def test_two_runs_with_one_seed_are_identical_and_another_seed_differs(phantom_folder, trained, tmp_path):
    out, _ = trained
    again = tmp_path / "again"
    train(phantom_folder, again, tiny_settings(), device="cpu", show_progress=False)
    first, second = load_file(str(out / "last.safetensors")), load_file(str(again / "last.safetensors"))
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_metrics(out / "metrics.csv")) == strip(read_metrics(again / "metrics.csv"))

    other = tmp_path / "other"
    train(phantom_folder, other, tiny_settings(seed=4), device="cpu", show_progress=False)
    third = load_file(str(other / "last.safetensors"))
    assert any(not np.array_equal(first[k], third[k]) for k in first)


def test_resume_continues_from_the_saved_epoch_as_if_never_stopped(phantom_folder, trained, tmp_path):
    out, _ = trained
    stopped = tmp_path / "stopped"
    train(phantom_folder, stopped, tiny_settings(epochs=1), device="cpu", show_progress=False)
    assert len(read_metrics(stopped / "metrics.csv")) == 1
    summary = train(phantom_folder, stopped, tiny_settings(epochs=2), device="cpu", resume=True, show_progress=False)
    assert summary["last_epoch"] == 2
    assert [int(r["epoch"]) for r in read_metrics(stopped / "metrics.csv")] == [1, 2]
    resumed, straight = load_file(str(stopped / "last.safetensors")), load_file(str(out / "last.safetensors"))
    assert all(np.allclose(resumed[k], straight[k], atol=1e-6) for k in straight)

    with pytest.raises(VbmdError, match="nothing to resume"):
        train(phantom_folder, tmp_path / "fresh", tiny_settings(), device="cpu", resume=True, show_progress=False)


def test_fine_tuning_starts_from_the_checkpoint_and_keeps_its_grid_and_statistics(phantom_folder, trained, tmp_path):
    out, _ = trained
    _, base_config = load_checkpoint(out / "best.json", device="cpu")
    tuned_dir = tmp_path / "tuned"
    # different architecture settings are overridden by the checkpoint's; a tiny lr barely moves the weights
    settings = tiny_settings(init=str(out / "best.json"), kwargs={"base": 8}, spacing_mm=(0.3, 0.3, 0.3),
                             lr=1e-12, epochs=1, name="tuned")
    train(phantom_folder, tuned_dir, settings, device="cpu", show_progress=False)
    _, config = load_checkpoint(tuned_dir / "last.json", device="cpu")
    assert config.kwargs == base_config.kwargs and config.spacing_mm == base_config.spacing_mm
    assert (config.mean, config.std) == (base_config.mean, base_config.std)
    assert config.training["init"] == str(out / "best.json")
    start, tuned = load_file(str(out / "best.safetensors")), load_file(str(tuned_dir / "last.safetensors"))
    weights = [k for k in start if k.endswith("weight") and start[k].ndim == 4]
    assert weights and all(np.allclose(start[k], tuned[k], atol=1e-8) for k in weights)


def test_vbmd_train_cli_prints_a_summary_and_refuses_bad_pairs(phantom_folder, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", str(phantom_folder), "-o", str(out), "--kwargs", '{"base": 4, "depth": 3}',
                 "--spacing-mm", "0.5", "--patch", "48,80", "--epochs", "1", "--steps-per-epoch", "2",
                 "--lr", "1e-3", "--threads", "1", "--quiet", "--json", "--appearance", "broad"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["last_epoch"] == 1 and Path(summary["checkpoint"]).is_file()
    assert (out / "best.safetensors").is_file()
    assert load_checkpoint(out / "best.json", device="cpu")[1].training["settings"]["appearance"] == "broad"

    bad = tmp_path / "bad.csv"
    other = generate_phantom(PhantomSpec(seed=9, n_slices=16, spacing_mm=0.3))
    write_phantom(other, tmp_path, "coarse")
    bad.write_text("image,mask,patient\n" + "".join(
        f"{phantom_folder}/case{k}.aim,{phantom_folder}/case{k}_mask.aim,P{k}\n" for k in range(5)
    ) + f"{phantom_folder}/case5.aim,{tmp_path}/coarse_mask.aim,P5\n")
    code = main(["train", str(bad), "-o", str(tmp_path / "bad_run"), "--epochs", "1", "--quiet", "--patch", "48,80",
                 "--spacing-mm", "0.5", "--kwargs", '{"base": 4, "depth": 3}'])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "does not fit image case5.aim" in err


def test_instance_norm_network_behaves_alike_in_training_and_inference():
    """Batch-norm running statistics of padded, augmented patches made a network fail on whole slices
    at inference; instance norm has no running statistics, so both modes give the same output."""
    import torch

    from napari_vbmd.segmentation.networks import build_network

    torch.manual_seed(0)
    network = build_network("unet2d_small", base=4, depth=3, norm="instance")
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        network.train()
        training = network(x)
        network.eval()
        inference = network(x)
    assert torch.allclose(training, inference, atol=1e-6)
    with pytest.raises(VbmdError, match="unknown normalisation"):
        build_network("unet2d_small", norm="layer")


def test_dice_bce_loss_is_recorded_and_unknown_losses_refused(phantom_folder, tmp_path):
    out = tmp_path / "bce"
    train(phantom_folder, out, tiny_settings(loss="dice_bce", epochs=1, kwargs={"base": 4, "depth": 3, "norm": "instance"}),
          device="cpu", show_progress=False)
    _, config = load_checkpoint(out / "best.json", device="cpu")
    assert config.training["loss"] == "dice_bce" and config.kwargs["norm"] == "instance"
    with pytest.raises(VbmdError, match="unknown loss"):
        train(phantom_folder, tmp_path / "x", tiny_settings(loss="focal"), device="cpu", show_progress=False)


def test_flips_keep_the_hand_a_right_hand_unless_asked():
    """The pipeline turns every hand into a right one; a mirror flip would put MC3 where MC2 belongs."""
    from napari_vbmd.segmentation.training import _augment_2d, _flip_axes

    rng = np.random.default_rng(0)
    assert {_flip_axes("none", rng) for _ in range(50)} == {()}
    assert {_flip_axes("rot180", rng) for _ in range(50)} == {(), (-1, -2)}  # a rotation, never a mirror
    assert {_flip_axes("all", rng) for _ in range(200)} == {(), (-1,), (-2,), (-1, -2)}
    with pytest.raises(VbmdError, match="unknown flips"):
        _flip_axes("x", rng)

    import torch

    # a bright block on the left of every image stays on the left without flips
    images = torch.zeros(8, 1, 16, 32)
    images[..., 4:12, 2:10] = 1000.0
    masks = (images > 0).float()
    _, out_masks = _augment_2d(images.clone(), masks.clone(), np.random.default_rng(1), flips="none")
    assert (out_masks[..., :16].sum() > 10 * out_masks[..., 16:].sum())

    with pytest.raises(VbmdError, match="unknown flips"):
        train("unused", "unused", tiny_settings(flips="mirror"), device="cpu", show_progress=False)


def test_broad_appearance_changes_the_image_never_the_mask_and_leaves_standard_runs_as_they_were(phantom_folder, tmp_path):
    import torch

    from napari_vbmd.segmentation.sampling import _augment_2d, _broad_appearance_2d, _gaussian_blur_2d

    # a bone-like disc: a thin bright shell (cortex) around fine texture, on soft tissue, five context slices
    yy, xx = np.mgrid[:64, :96]
    r = np.hypot(yy - 32, xx - 48)
    texture = 150 + 120 * np.sign(np.sin(xx * 1.3) * np.sin(yy * 1.1))
    slice_ = np.where(r < 18, texture, 0.0) + np.where((r >= 16) & (r < 18), 900.0, 0.0)
    images = torch.tensor(np.broadcast_to(slice_, (8, 5, 64, 96)).copy(), dtype=torch.float32)
    masks = torch.tensor((r < 18)[None, None].repeat(8, 0), dtype=torch.float32)

    # "standard" is the augmentation every shipped checkpoint was trained with: the same draws, the same images
    torch.manual_seed(0)
    plain, _ = _augment_2d(images.clone(), masks.clone(), np.random.default_rng(5), "none")
    torch.manual_seed(0)
    standard, _ = _augment_2d(images.clone(), masks.clone(), np.random.default_rng(5), "none", "standard", 0.3)
    assert torch.equal(plain, standard)

    broad = _broad_appearance_2d(images, np.random.default_rng(5), 0.3)
    assert torch.isfinite(broad).all() and broad.shape == images.shape
    changed = [not torch.allclose(broad[i], images[i]) for i in range(8)]
    assert sum(changed) >= 6  # five changes of probability 1/2 each: a sample is left alone 1 time in 32
    assert torch.equal(broad, _broad_appearance_2d(images, np.random.default_rng(5), 0.3))  # from the generator alone
    torch.manual_seed(1)
    _, broad_masks = _augment_2d(images.clone(), masks.clone(), np.random.default_rng(5), "none", "broad", 0.3)
    torch.manual_seed(1)
    _, standard_masks = _augment_2d(images.clone(), masks.clone(), np.random.default_rng(5), "none", "standard", 0.3)
    assert torch.equal(broad_masks, standard_masks)  # the truth does not depend on the acquisition

    # "broad-half": the standard augmentation for every sample, then the broad changes for about half of them
    halves = []
    for seed in range(6):
        torch.manual_seed(seed)
        std, std_masks = _augment_2d(images.clone(), masks.clone(), np.random.default_rng(seed), "none", "standard", 0.3)
        torch.manual_seed(seed)
        half, half_masks = _augment_2d(images.clone(), masks.clone(), np.random.default_rng(seed), "none",
                                       "broad-half", 0.3)
        assert torch.equal(half_masks, std_masks)
        halves += [torch.equal(half[i], std[i]) for i in range(8)]
    # 48 samples, each left at the standard look with probability 1/2 + 1/64 (a chosen one that draws none of the five)
    assert 12 <= sum(halves) <= 36

    # the wider blur lowers a thin cortex's peak, as a wider point spread does; a blur keeps the mean
    blurred = _gaussian_blur_2d(images[:1], 0.2 / 0.3)
    assert float(blurred[0, 2, 32, 31]) < 0.9 * float(images[0, 2, 32, 31])
    assert float(blurred.mean()) == pytest.approx(float(images[:1].mean()), rel=1e-3)

    with pytest.raises(VbmdError, match="unknown appearance"):
        _augment_2d(images.clone(), masks.clone(), np.random.default_rng(5), "none", "grainy")
    with pytest.raises(VbmdError, match="unknown appearance"):
        train(phantom_folder, tmp_path / "x", tiny_settings(appearance="grainy"), device="cpu", show_progress=False)
    with pytest.raises(VbmdError, match="for 2D networks"):
        train(phantom_folder, tmp_path / "y", tiny_settings(architecture="unet3d_isensee", kwargs={}, patch=(16, 32, 32),
                                                            appearance="broad"), device="cpu", show_progress=False)
    out = tmp_path / "broad"
    train(phantom_folder, out, tiny_settings(appearance="broad", epochs=1), device="cpu", show_progress=False)
    _, config = load_checkpoint(out / "best.json", device="cpu")
    assert config.training["settings"]["appearance"] == "broad"
    out = tmp_path / "broad-half"
    train(phantom_folder, out, tiny_settings(appearance="broad-half", epochs=1), device="cpu", show_progress=False)
    assert load_checkpoint(out / "best.json", device="cpu")[1].training["settings"]["appearance"] == "broad-half"


def test_the_study_3d_unet_trains_and_its_checkpoint_segments(phantom_folder, tmp_path):
    from napari_vbmd.segmentation.pipeline import segment

    out = tmp_path / "run3d"
    settings = tiny_settings(architecture="unet3d_isensee", kwargs={}, patch=(16, 32, 32), batch_size=1, epochs=1,
                             steps_per_epoch=2, lr=1e-4, flips="rot180")
    summary = train(phantom_folder, out, settings, device="cpu", show_progress=False)
    assert summary["last_epoch"] == 1
    network, config = load_checkpoint(out / "best.json", device="cpu")
    assert config.architecture == "unet3d_isensee" and config.dims == 3
    assert config.training["batch_size"] == 1 and config.training["settings"]["flips"] == "rot180"
    scan = read_scan(phantom_folder / "case1.aim")
    try:
        # two steps of training: the plumbing is tested, not the mask (which the pipeline's checks would refuse)
        result = segment(scan, model=str(out / "best.json"), device="cpu", threads=1, refuse_other_bone=False)
    except VbmdError as exc:  # two steps of training may leave a network that marks nothing
        assert "no MC2 found" in str(exc)
    else:
        assert result.mask.shape == scan.shape and result.mask.spacing == scan.spacing


def test_scans_with_gobj_contours_train_end_to_end(tmp_path):
    """A site's expert contours as GOBJ beside the AIM they were drawn on (whole-voxel scanner
    coordinates): found by name, aligned by geometry, trained on."""
    from _gobj_writer import ellipses_from_mask, write_gobj_ellipses
    from _segmentation_synthetic import dice, synthetic_mcp

    from napari_vbmd.io import read_mask, write_image

    for k, hand in enumerate(("right", "left", "right")):
        scan, truth = synthetic_mcp(shape=(24, 96, 128), hand=hand, seed=k, offset_x=4 * k)
        write_image(tmp_path / f"site{k}.aim", scan)
        position = tuple(int(round(o / s)) for o, s in zip(scan.origin, scan.spacing))
        assert position == (10, 20, 30)
        write_gobj_ellipses(tmp_path / f"site{k}.gobj", ellipses_from_mask(truth, position), (200, 200, 60), 0.1)
        aligned = read_mask(tmp_path / f"site{k}.gobj", like=read_scan(tmp_path / f"site{k}.aim"))
        assert dice(aligned.data != 0, truth) > 0.97  # the ellipse drawn on the GOBJ, back in its place

    pairs = find_pairs(tmp_path)
    assert [(p.case, p.mask.name) for p in pairs] == [(f"site{k}", f"site{k}.gobj") for k in range(3)]
    image, inside = load_pair(pairs[1])
    assert inside.shape == image.shape and inside.any()
    summary = train(tmp_path, tmp_path / "run", tiny_settings(epochs=1, steps_per_epoch=2), device="cpu",
                    show_progress=False)
    assert summary["last_epoch"] == 1 and summary["n_cases"]["train"] >= 1
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_weight_averaging_keeps_the_mean_of_the_epochs_weights_and_resumes_exactly(phantom_folder, tmp_path):
    for n in (1, 2, 3):
        train(phantom_folder, tmp_path / f"raw{n}", tiny_settings(epochs=n), device="cpu", show_progress=False)
    raw = [load_file(str(tmp_path / f"raw{n}" / "last.safetensors")) for n in (1, 2, 3)]

    averaged_dir = tmp_path / "averaged"
    summary = train(phantom_folder, averaged_dir, tiny_settings(epochs=3, average_from=2), device="cpu",
                    show_progress=False)
    average = load_file(str(averaged_dir / "average.safetensors"))
    # averaging does not disturb the raw trajectory, and the average is of epochs 2 and 3 only
    last = load_file(str(averaged_dir / "last.safetensors"))
    assert all(np.array_equal(last[k], raw[2][k]) for k in last)
    parameters = [k for k in average if "running_" not in k and "num_batches_tracked" not in k]
    assert all(np.allclose(average[k], (raw[1][k] + raw[2][k]) / 2, atol=1e-6) for k in parameters)
    assert not all(np.allclose(average[k], raw[2][k]) for k in parameters)
    # the tiny network has batch norm: the average's statistics are recomputed on 20 training batches
    tracked = [k for k in average if k.endswith("num_batches_tracked")]
    assert tracked and all(int(average[k]) == 20 for k in tracked)
    # before averaging starts the validated model is the raw one; from epoch 2 on it is the average
    metrics = read_metrics(averaged_dir / "metrics.csv")
    raw_metrics = read_metrics(tmp_path / "raw3" / "metrics.csv")
    assert metrics[0]["val_dice"] == raw_metrics[0]["val_dice"]
    best = load_file(str(averaged_dir / "best.safetensors"))
    expected = {1: raw[0], 2: raw[1], 3: average}[summary["best_epoch"]]
    assert all(np.allclose(best[k], expected[k], atol=1e-6) for k in best)

    # stopped after epoch 2 and resumed: the same average as the uninterrupted run
    stopped = tmp_path / "stopped"
    train(phantom_folder, stopped, tiny_settings(epochs=2, average_from=2), device="cpu", show_progress=False)
    train(phantom_folder, stopped, tiny_settings(epochs=3, average_from=2), device="cpu", resume=True, show_progress=False)
    resumed = load_file(str(stopped / "average.safetensors"))
    assert all(np.allclose(resumed[k], average[k], atol=1e-6) for k in average)
    assert [r["val_dice"] for r in read_metrics(stopped / "metrics.csv")] == [r["val_dice"] for r in metrics]

    with pytest.raises(VbmdError, match="average_from must be an epoch between 1 and 3"):
        train(phantom_folder, tmp_path / "bad", tiny_settings(epochs=3, average_from=5), device="cpu", show_progress=False)


def test_slice_context_trains_fine_tunes_and_segments_with_neighbouring_slices(phantom_folder, tmp_path):
    from napari_vbmd.segmentation.pipeline import segment
    from napari_vbmd.segmentation.training import _Sampler2D

    out = tmp_path / "context"
    # a low threshold: two epochs of a tiny network may otherwise mark nothing, and this is about the plumbing
    train(phantom_folder, out, tiny_settings(context_mm=(-1.0, 0.0, 1.0), threshold=0.02), device="cpu",
          show_progress=False)
    network, config = load_checkpoint(out / "best.json", device="cpu")
    assert config.context_mm == (-1.0, 0.0, 1.0) and config.kwargs["in_channels"] == 3
    assert next(w for w in network.parameters() if w.ndim == 4).shape[1] == 3  # the first convolution
    scan = read_scan(phantom_folder / "case1.aim")
    result = segment(scan, model=str(out / "best.json"), threads=1, refuse_other_bone=False)  # the plumbing
    assert result.mask.shape == scan.shape and result.mask.data.any()

    # the sampler stacks the slices 1 mm (4 slices at 0.25 mm) below and above, clamped at the crop's ends
    image, inside = load_pair(find_pairs(phantom_folder)[0])
    case = prepare_case(image, inside, (0.5, 0.5, 0.5), 2, 4.0, "case0")
    sampler = _Sampler2D([case], (48, 80), 0.0, (-1.0, 0.0, 1.0))
    np.testing.assert_array_equal(sampler.offsets[0], [-4, 0, 4])
    images, masks = sampler.batch(6, np.random.default_rng(0))
    assert images.shape == (6, 3, 48, 80) and masks.shape == (6, 1, 48, 80)

    # fine-tuning keeps the checkpoint's context; a context that the network cannot take is refused
    tuned = tmp_path / "tuned"
    train(phantom_folder, tuned, tiny_settings(init=str(out / "best.json"), epochs=1), device="cpu", show_progress=False)
    assert load_checkpoint(tuned / "last.json")[1].context_mm == (-1.0, 0.0, 1.0)
    with pytest.raises(VbmdError, match="2D networks"):
        train(phantom_folder, tmp_path / "bad3d", tiny_settings(architecture="unet3d_isensee", kwargs={},
              patch=(16, 32, 32), context_mm=(-1.0, 0.0)), device="cpu", show_progress=False)
    with pytest.raises(VbmdError, match="finite"):
        train(phantom_folder, tmp_path / "badnan", tiny_settings(context_mm=(float("nan"),)), device="cpu",
              show_progress=False)
    assert not (tmp_path / "bad3d").exists() and not (tmp_path / "badnan").exists()  # no empty run folders left


def test_cosine_schedule_with_warm_up_is_a_function_of_the_epoch_alone():
    settings = tiny_settings(epochs=10, lr_schedule="cosine", warmup_epochs=2)
    rates = [epoch_lr(settings, 1e-3, e) for e in range(1, 11)]
    assert rates[:2] == pytest.approx([5e-4, 1e-3])  # linear warm-up
    assert rates[2] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)  # cosine from lr to lr/100
    assert all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert rates[6] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * 4 / 7)))
    constant = tiny_settings(epochs=10)
    assert [epoch_lr(constant, 1e-3, e) for e in range(1, 11)] == [1e-3] * 10


def test_schedule_and_gradient_clipping_are_applied_recorded_and_resumable(phantom_folder, trained, tmp_path):
    scheduled = dict(epochs=3, lr_schedule="cosine", warmup_epochs=1, grad_clip=1e-3)
    out = tmp_path / "scheduled"
    train(phantom_folder, out, tiny_settings(**scheduled), device="cpu", show_progress=False)
    rows = read_metrics(out / "metrics.csv")
    settings = tiny_settings(**scheduled)
    assert [float(r["lr"]) for r in rows] == pytest.approx([epoch_lr(settings, 1e-3, e) for e in (1, 2, 3)], rel=1e-5)
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-3, 1e-5], rel=1e-5)  # warm-up of 1 epoch: full lr
    # the gradient norm is recorded before clipping: far above the clip, so every step was clipped
    assert all(float(r["grad_norm"]) > 1e-2 for r in rows)
    _, config = load_checkpoint(out / "best.json", device="cpu")
    assert (config.training["lr_schedule"], config.training["warmup_epochs"], config.training["grad_clip"]) == (
        "cosine", 1, 1e-3)

    # clipping every step to a thousandth changes Adam's path (the steps' relative sizes), unclipped it is the plain run
    unclipped = tmp_path / "unclipped"
    train(phantom_folder, unclipped, tiny_settings(**{**scheduled, "grad_clip": None}), device="cpu", show_progress=False)
    clipped_weights, unclipped_weights = load_file(str(out / "last.safetensors")), load_file(str(unclipped / "last.safetensors"))
    assert any(not np.allclose(clipped_weights[k], unclipped_weights[k]) for k in clipped_weights)
    assert all(np.isfinite(v).all() for v in clipped_weights.values())

    # stopped after epoch 2 and resumed: the same learning rates and the same weights as the run straight through
    stopped = tmp_path / "stopped"
    train(phantom_folder, stopped, tiny_settings(**{**scheduled, "epochs": 2}), device="cpu", show_progress=False)
    train(phantom_folder, stopped, tiny_settings(**scheduled), device="cpu", resume=True, show_progress=False)
    assert [r["lr"] for r in read_metrics(stopped / "metrics.csv")] == [r["lr"] for r in rows]
    resumed = load_file(str(stopped / "last.safetensors"))
    assert all(np.allclose(resumed[k], clipped_weights[k], atol=1e-6) for k in clipped_weights)


def test_impossible_schedules_and_a_diverging_loss_are_refused(phantom_folder, tmp_path, monkeypatch, capsys):
    for changes, message in [
        (dict(lr_schedule="step"), "unknown learning-rate schedule 'step'"),
        (dict(warmup_epochs=2), "warmup_epochs must be between 0 and 1"),
        (dict(warmup_epochs=-1), "warmup_epochs must be between 0 and 1"),
        (dict(grad_clip=0.0), "grad_clip must be a positive number"),
        (dict(grad_clip=float("nan")), "grad_clip must be a positive number"),
        (dict(epochs=0), "epochs must be at least 1, got 0"),
        (dict(seed=-1), "seed must be a whole number >= 0, got -1"),
        (dict(split_seed=-2), "split_seed must be a whole number >= 0, got -2"),
    ]:
        with pytest.raises(VbmdError, match=message):
            train(phantom_folder, tmp_path / "refused", tiny_settings(**changes), device="cpu", show_progress=False)
        assert not (tmp_path / "refused").exists()
    code = main(["train", str(phantom_folder), "-o", str(tmp_path / "cli"), "--epochs", "2", "--warmup-epochs", "2",
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "warmup_epochs must be between 0 and 1" in err

    import napari_vbmd.segmentation.training as training

    real_loss = training.training_loss
    monkeypatch.setattr(training, "training_loss", lambda kind, logits, target: real_loss(kind, logits, target) * np.nan)
    with pytest.raises(VbmdError, match=r"training diverged: the loss is not finite in epoch 1 \(lower the learning "
                       r"rate or set a gradient clip\)$"):
        train(phantom_folder, tmp_path / "nan", tiny_settings(), device="cpu", show_progress=False)
    assert not (tmp_path / "nan" / "best.safetensors").exists()

    calls = []  # finite for epoch 1 (3 steps), NaN from epoch 2 on: epoch 1's checkpoint stays as it was written

    def nan_after_epoch_1(kind, logits, target):
        calls.append(1)
        loss = real_loss(kind, logits, target)
        return loss if len(calls) <= 3 else loss * np.nan

    monkeypatch.setattr(training, "training_loss", nan_after_epoch_1)
    with pytest.raises(VbmdError, match="not finite in epoch 2 .*last.json holds the last finished epoch"):
        train(phantom_folder, tmp_path / "nan2", tiny_settings(), device="cpu", show_progress=False)
    _, config = load_checkpoint(tmp_path / "nan2" / "last.json", device="cpu")
    assert config.training["epoch"] == 1
    assert all(np.isfinite(v).all() for v in load_file(str(tmp_path / "nan2" / "last.safetensors")).values())


def test_resuming_a_run_from_before_the_gradient_norm_column_keeps_its_rows(phantom_folder, tmp_path):
    out = tmp_path / "old"
    train(phantom_folder, out, tiny_settings(epochs=1), device="cpu", show_progress=False)
    rows = read_metrics(out / "metrics.csv")
    old_columns = [c for c in METRIC_COLUMNS if c != "grad_norm"]
    with open(out / "metrics.csv", "w", newline="") as fh:  # as an earlier version wrote it
        writer = csv.DictWriter(fh, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    train(phantom_folder, out, tiny_settings(epochs=2), device="cpu", resume=True, show_progress=False)
    resumed = read_metrics(out / "metrics.csv")
    assert list(resumed[0]) == METRIC_COLUMNS and [r["epoch"] for r in resumed] == ["1", "2"]
    assert resumed[0]["grad_norm"] == "" and resumed[0]["val_dice"] == rows[0]["val_dice"]
    assert float(resumed[1]["grad_norm"]) > 0


def test_seeds_sharing_a_split_seed_join_an_ensemble_that_is_calibrated_segments_and_fine_tunes(
        phantom_folder, trained, tmp_path, capsys):
    from napari_vbmd.segmentation.pipeline import segment

    first, _ = trained  # seed 3, its own split
    second = tmp_path / "seed4"
    train(phantom_folder, second, tiny_settings(seed=4, split_seed=3, threshold=0.02), device="cpu", show_progress=False)
    split_a, split_b = (json.loads((run / "split.json").read_text()) for run in (first, second))
    assert {k: split_a[k] for k in ("train", "val", "test")} == {k: split_b[k] for k in ("train", "val", "test")}
    assert split_b["seed"] == 3
    weights_a, weights_b = load_file(str(first / "last.safetensors")), load_file(str(second / "last.safetensors"))
    assert any(not np.array_equal(weights_a[k], weights_b[k]) for k in weights_a)  # other initialisation and batches

    out = tmp_path / "ensemble.json"
    code = main(["ensemble", str(first), str(second), "-o", str(out), "--name", "pair", "--calibrate",
                 "--threads", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["members"] == 2 and summary["validation_cases"] == len(split_a["val"])
    network, config = load_checkpoint(out)
    assert config.kwargs["members"] == 2 and config.name == "pair"
    assert config.threshold == summary["threshold"] and config.boundary_band_mm == summary["boundary_band_mm"]
    assert config.training["threshold_calibration"]["cases"] == split_a["val"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".vbmd-ensemble")) == []

    scan = read_scan(phantom_folder / "case1.aim")
    result = segment(scan, model=str(out), device="cpu", threads=1, keep_probability=True, refuse_other_bone=False)
    assert result.mask.shape == scan.shape and result.probability.any()
    # exported for ONNX Runtime beside it, so a CPU runs it there, with torch's answer
    assert summary["onnx"] == str(out.with_suffix(".onnx")) and result.runtime.startswith("onnxruntime")
    in_torch = segment(scan, model=load(str(out), "cpu", cached=False, runtime="torch"), threads=1, keep_probability=True,
                       refuse_other_bone=False)
    assert np.abs(in_torch.probability.astype(int) - result.probability.astype(int)).max() <= 1

    tuned = tmp_path / "tuned"  # fine-tuning an ensemble tunes every member on the joint answer
    train(phantom_folder, tuned, tiny_settings(init=str(out), epochs=1), device="cpu", show_progress=False)
    _, tuned_config = load_checkpoint(tuned / "last.json")
    assert tuned_config.kwargs["members"] == 2

    # members validated on different cases cannot be calibrated together; the output is not written
    other = tmp_path / "seed5"
    train(phantom_folder, other, tiny_settings(seed=5, epochs=1), device="cpu", show_progress=False)
    if json.loads((other / "split.json").read_text())["val"] != split_a["val"]:
        code = main(["ensemble", str(first), str(other), "-o", str(tmp_path / "mixed"), "--calibrate"])
        assert code == 2 and "validated on different cases" in capsys.readouterr().err
        assert not (tmp_path / "mixed.json").exists()
    code = main(["ensemble", str(first), str(second), "-o", str(first / "best.json")])
    assert code == 2 and "refusing to overwrite an input file" in capsys.readouterr().err


def test_training_exports_its_best_checkpoint_for_onnx_runtime(trained):
    from napari_vbmd.segmentation.models import load

    out, summary = trained
    assert summary["onnx"] == str(out / "best.onnx") and "difference from torch" in summary["onnx_note"]
    assert load(str(out / "best.json"), "cpu", cached=False).runtime == "onnxruntime"
    assert not (out / "last.onnx").exists()


def test_validation_dice_of_a_checkpoint_is_the_pipelines_dice(phantom_folder, trained):
    """Validation scores the mask segment() keeps (working grid, probabilities back on the native grid,
    threshold, hole filling, MC2 component, boundary refinement), so the Dice that picks the best epoch
    is the pipeline's Dice of that checkpoint, to the last bit."""
    from napari_vbmd.evaluation.metrics import dice
    from napari_vbmd.segmentation.pipeline import segment
    from napari_vbmd.segmentation.models import load_model
    from napari_vbmd.segmentation.validation import validate, validation_case

    out, _ = trained
    loaded = load_model(out / "best.json", device="cpu")
    for band in (0.0, 0.5):  # the checkpoint's own band (0) and a refined boundary
        model = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, threshold=0.3,
                                                                       boundary_band_mm=band))
        for case in ("case0", "case1"):  # a right and a left hand
            image, inside = load_pair(Pair(case, phantom_folder / f"{case}.aim", phantom_folder / f"{case}_mask.aim", case))
            # the mask segment() would keep, before its checks refuse a barely trained network's mask
            pipeline = dice(inside, segment(image, model=model, threads=1, refuse_other_bone=False).mask.data)
            validation = validate(model, [validation_case(image, inside, loaded.config.crop_margin_mm, case)])
            assert validation["dice"] == pipeline
            assert 0 < pipeline < 1  # a barely trained network: a real overlap, far from a trivial one


def test_a_training_pair_without_a_hand_is_refused_unless_a_csv_gives_it(tmp_path):
    """A crop whose header says no hand cannot be mirrored rightly: refused, never taken for a right hand."""
    phantom = generate_phantom(PhantomSpec(seed=3, hand="left", n_slices=40, spacing_mm=0.2, hand_in_header=False))
    paths = write_phantom(phantom, tmp_path, "crop")
    assert read_scan(paths["image"]).hand is None
    pair = Pair("crop", paths["image"], paths["mask"], "P1")
    with pytest.raises(VbmdError, match="pair crop: cannot tell which hand.*hand column"):
        load_pair(pair)
    listed = tmp_path / "pairs.csv"
    listed.write_text(f"image,mask,patient,hand\n{paths['image'].name},{paths['mask'].name},P1,Left\n")
    (from_csv,) = find_pairs(listed)
    image, inside = load_pair(from_csv)
    assert image.hand == "left" and inside.any()
    listed.write_text(f"image,mask,patient,hand\n{paths['image'].name},{paths['mask'].name},P1,up\n")
    with pytest.raises(VbmdError, match="line 2: hand must be left or right"):
        find_pairs(listed)


def test_validating_every_nth_epoch_skips_the_others_and_keeps_the_best_validated_one(phantom_folder, tmp_path, monkeypatch):
    import napari_vbmd.segmentation.training as training

    validated = []
    real_validate = training.validate

    def counting_validate(model, cases):
        validated.append(len(cases))
        return real_validate(model, cases)

    monkeypatch.setattr(training, "validate", counting_validate)
    out = tmp_path / "every2"
    summary = train(phantom_folder, out, tiny_settings(epochs=5, validate_every=2), device="cpu", show_progress=False)
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r["val_dice"] != "" for r in rows] == [False, True, False, True, True]  # the 2nd, 4th and the last
    assert len(validated) == 3
    scored = {int(r["epoch"]): float(r["val_dice"]) for r in rows if r["val_dice"]}
    assert summary["best_epoch"] == max(scored, key=scored.get)
    assert summary["best_val_dice"] == pytest.approx(max(scored.values()), abs=1e-5)
    _, config = load_checkpoint(out / "best.json", device="cpu")
    assert config.training["epoch"] == summary["best_epoch"]
    # a time budget that ends the run at an epoch off the schedule validates that epoch before stopping
    stopped = tmp_path / "budget"
    summary = train(phantom_folder, stopped, tiny_settings(epochs=5, validate_every=4, max_minutes=1e-9), device="cpu",
                    show_progress=False)
    rows = read_metrics(stopped / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["val_dice"] != ""
    assert summary["best_epoch"] == summary["last_epoch"] == 1
    _, last = load_checkpoint(stopped / "last.json", device="cpu")
    assert last.training["val_metrics"]["dice"] == pytest.approx(float(rows[0]["val_dice"]), abs=1e-5)
    # an interval below one epoch is refused
    with pytest.raises(VbmdError, match="validation interval"):
        train(phantom_folder, tmp_path / "bad", tiny_settings(validate_every=0), device="cpu", show_progress=False)


def test_stopping_after_an_epoch_keeps_the_schedule_and_resumes_to_the_same_weights(phantom_folder, tmp_path):
    cosine = dict(epochs=4, lr_schedule="cosine", validate_every=3)
    straight = tmp_path / "straight"
    train(phantom_folder, straight, tiny_settings(**cosine), device="cpu", show_progress=False)
    stopped = tmp_path / "stopped"
    summary = train(phantom_folder, stopped, tiny_settings(**cosine, stop_after=2), device="cpu", show_progress=False)
    rows, straight_rows = read_metrics(stopped / "metrics.csv"), read_metrics(straight / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and summary["last_epoch"] == 2
    assert [r["lr"] for r in rows] == [r["lr"] for r in straight_rows[:2]]  # the 4-epoch cosine, not a 2-epoch one
    assert rows[1]["val_dice"] != "" and rows[0]["val_dice"] == ""  # the run's last epoch is validated
    train(phantom_folder, stopped, tiny_settings(**cosine), device="cpu", resume=True, show_progress=False)
    assert [r["lr"] for r in read_metrics(stopped / "metrics.csv")] == [r["lr"] for r in straight_rows]
    resumed, reference = load_file(str(stopped / "last.safetensors")), load_file(str(straight / "last.safetensors"))
    assert all(np.allclose(resumed[k], reference[k], atol=1e-6) for k in reference)
    with pytest.raises(VbmdError, match="--stop-after"):
        train(phantom_folder, tmp_path / "bad", tiny_settings(epochs=4, stop_after=5), device="cpu", show_progress=False)
