"""End to end on faces: `dvc repro` of the faces, faces_synthetic and facearg chains in a temporary
copy of the repo, on a small archive cut from the real UTKFace mirror (a few dozen faces per group,
plus a malformed name and a corrupt JPEG); FaceARG is absent and must be skipped, not failed."""
import io
import json
import tarfile

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import mirror_file, with_overrides
from tests.test_e2e import dvc, make_repo

PER_GROUP = 36
GROUPS = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}


def cut_mirror(dest) -> None:
    """UTKFace.tar.gz with the first PER_GROUP faces of each of GROUPS, streamed from the mirror."""
    archive = mirror_file("UTKFace.tar.gz")
    counts = dict.fromkeys(GROUPS, 0)
    with tarfile.open(archive, "r|gz") as src, \
            tarfile.open(dest / "UTKFace.tar.gz", "w:gz") as out:
        for m in src:
            race = m.name.split("/")[-1].split("_")[2] if m.name.count("_") >= 3 else None
            if m.isfile() and race in counts and counts[race] < PER_GROUP:
                counts[race] += 1
                out.addfile(m, src.extractfile(m))
            if min(counts.values()) >= PER_GROUP:
                break
        for name, data in (("UTKFace/39_1_20170116174525125.jpg.chip.jpg", b"\xff\xd8\xff"),  # malformed name
                           ("UTKFace/30_0_2_20990101000000000.jpg.chip.jpg", b"\xff\xd8\xffnot a jpeg")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


TINY = {
    "datasets": ["faces", "faces_synthetic", "facearg"],
    "transfer.datasets": [],
    "seeds.datasets": [],
    **{f"latent.{k}": v for k, v in {"image_size": 32, "iterations": 20, "latent_dim": 4, "top_k": 2,
                                     "traversal_faces": 2, "max_faces": 150, "batch_eval": 50}.items()},
    **{f"debias.{k}": v for k, v in {"image_size": 32, "train_size": 40, "test_per_cell": 3, "seeds": [0, 1],
                                     "epochs": 2, "channels": 4, "latent_dim": 4, "batch_eval": 20,
                                     "race_mix": {"white": 0.6, "black": 0.1, "asian": 0.1, "indian": 0.1,
                                                  "others": 0.1}}.items()},
    "faces.experts.arch": "vae",              # VAE experts through the stages (3 channels, 32 px)
    "faces.experts.latent_dim": 8,
    "faces.experts.residual": False,          # residual experts (the faces default) exist for paper and unet only
    **{f"{ds}.{k}": v for ds in ("faces", "faces_synthetic", "facearg") for k, v in {
        "data.source.sha256": None, "data.cap_per_group": 30, "data.test_fraction": 0.2,
        "data.val_fraction": 0.2, "classifier.epochs": 1, "experts.channels": 4,
        "pretrain.max_iterations": 3, "train.iterations": 4, "train.check_every": 2,
        "train.checkpoint_every": 2, "train.check_size": 20, "train.batch_size": 12}.items()},
    "faces_synthetic.data.mechanisms": ["hflip", "shift_up", "warm_cast"],
    "faces_synthetic.experts.num_experts": 3,
    "faces_synthetic.experts.arch": "unet",   # the default is the paper expert; cover the U-Net too
    # and every stabiliser, through the stages (a D rebuilt without spectral norm would not load)
    "faces_synthetic.experts.residual": True,
    "faces_synthetic.train.spectral_norm": True,
    "faces_synthetic.train.r1_gamma": 1.0,
    "faces_synthetic.train.ema": 0.9,
    "faces_synthetic.train.hysteresis": 0.5,
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, params):
    mirror = tmp_path_factory.mktemp("mirror")
    cut_mirror(mirror)
    root = make_repo(tmp_path_factory.mktemp("repo"), with_overrides(params, TINY))
    return root, mirror


def test_faces_chains_follow_the_contracts_and_facearg_is_skipped(repo):
    root, mirror = repo
    out = dvc(root, "repro", env={"ICM_DATA_MIRROR": str(mirror)})
    assert "skipped: FaceARG not found" in out
    assert json.loads((root / "reports/metrics/facearg.json").read_text())["skipped"] is True

    status = json.loads((root / "data/faces/raw/status.json").read_text())
    assert status["skipped"] == {"unreadable image": 1, next(k for k in status["skipped"] if "malformed" in k): 1}
    assert status["per_group"] == dict.fromkeys(GROUPS.values(), 36)   # the corrupt file is not counted

    m = json.loads((root / "reports/metrics/faces.json").read_text())
    assert m["specialization"]["n_mechanisms"] == 2 and m["specialization"]["n_experts"] == 2
    for key in ("val_acc", "test_acc", "canonical_rate_inputs", "canonical_rate_outputs"):
        assert 0 <= m["classifier"][key] <= 1
    assert 0 < m["d_score_outputs"] < 1 and -1 <= m["ssim_input_output"] <= 1
    assert m["train"]["iterations"] == 4 and "collapse" not in m
    assert m["alive_experts"] + m["dead_experts"] == 2 and set(m["per_expert"]) == {"expert_0", "expert_1"}
    for e in m["per_expert"].values():   # every expert measured on every test face, winner or not
        assert 0 <= e["win_share"] <= 1 and 0 < e["d_score"] < 1 and isinstance(e["dead"], bool)
        assert e["spread_ratio"] >= 0 and -1 <= e["ssim_input"] <= 1 and 0 <= e["canonical_rate"] <= 1
    assert set(m["assignment"]) == {"white", "black"}
    assert 0 <= m["classifier"]["gender_acc_canonical"] <= 1          # the robustness probe, per group
    for g in m["per_group"].values():
        assert 0 <= g["gender_acc_inputs"] <= 1 and 0 <= g["gender_acc_outputs"] <= 1

    s = json.loads((root / "reports/metrics/faces_synthetic.json").read_text())
    assert s["specialization"]["n_mechanisms"] == 3 and 0 <= s["specialization"]["distinct_winners"] <= 3
    assert set(s["per_mechanism"]) == {"hflip", "shift_up", "warm_cast"}
    assert s["psnr_inputs"] > 5 and s["psnr_outputs"] > 0 and len(s["per_expert"]) == 3
    flip, up = s["per_mechanism"]["hflip"], s["per_mechanism"]["shift_up"]
    assert flip["restoration"] is None and flip["psnr_ceiling"] > 99        # lossless inverse: no fraction
    assert up["psnr_inputs"] < up["psnr_ceiling"] < 99 and isinstance(up["restoration"], float)
    races = set(pd.read_csv(root / "data/faces_synthetic/prepared/manifest.csv")["race"])
    assert races == set(GROUPS.values())      # synthetic mode draws faces of every group
    t = torch.load(root / "data/faces_synthetic/prepared/tensors.pt")
    assert t["train_transformed"].shape[1:] == (3, 32, 32)
    assert torch.equal(t["train_transformed"][t["train_transformed_mech"] == 0],
                       t["train_transformed_clean"][t["train_transformed_mech"] == 0].flip(-1))
    for ds in ("faces", "faces_synthetic"):
        assert (root / f"reports/figures/{ds}/samples.png").stat().st_size > 1000
        assert "## specialization" in (root / f"reports/{ds}.md").read_text()
    assert "skipped" in (root / "reports/facearg.md").read_text()
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["faces"]["data"]["source"]["sha256"] is None

    # the latent study (faces_synthetic's raw faces: every race, with labels)
    lat = json.loads((root / "reports/metrics/latent.json").read_text())
    assert lat["image_size"] == 32 and lat["n_train"] + lat["n_test"] == 150 and lat["compare"] == ["1", "4"]
    for b in lat["betas"].values():
        assert b["recon_mse"] > 0 and b["kl"] >= 0 and set(b["labels"]) == {"gender", "age", "race"}
        for name, row in b["labels"].items():
            assert len(row["mi_per_dim"]) == 4 and min(row["mi_per_dim"]) >= 0 and row["mig"] >= 0
            assert 0 <= row["probe_latent"] <= 1 and 0 <= row["probe_pixels"] <= 1
        assert 0.5 <= b["labels"]["gender"]["top_dim_auc"] <= 1 and "top_dim_auc" not in b["labels"]["race"]
    assert (root / "reports/figures/latent/traversal_beta4.png").stat().st_size > 1000
    assert "## targets" in (root / "reports/latent.md").read_text()

    # the debias study: every arm, every seed, every race x gender cell of the balanced test set
    d = json.loads((root / "reports/metrics/debias.json").read_text())
    assert d["n_train"] == 40 and d["n_test"] == 30 and d["train_cells"]["white_male"] + d["train_cells"][
        "white_female"] == 24 and set(d["arms"]) == {"erm", "reweight", "dbvae"}
    for arm in d["arms"].values():
        assert [r["seed"] for r in arm["runs"]] == [0, 1] and len(arm["summary"]["cells"]) == 10
        for r in arm["runs"]:
            assert r["worst_acc"] <= r["mean_acc"] <= max(r["cells"].values()) and r["gap"] >= 0
            assert r["mean_acc"] == pytest.approx(r["accuracy"])   # balanced cells: the two agree
        assert arm["summary"]["worst_acc"]["std"] >= 0
    assert set(d["compare"]) >= {"worst_gain_dbvae", "gap_ratio_dbvae", "mean_change_dbvae"}
    assert (root / "reports/figures/debias/cells.png").stat().st_size > 1000
    assert "## targets" in (root / "reports/debias.md").read_text()
