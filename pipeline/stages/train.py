"""train: competitive specialisation of the pretrained experts against the discriminator.

With `distributed.nproc` > 1 this entry point relaunches itself under torchrun; each rank then trains
its slice of every global batch with DDP (pipeline/distributed.py), and rank 0 writes the outputs.
"""
import json
import sys

import torch
import torch.distributed as dist

from pipeline import checkpoint, config, distributed, loop
from pipeline.data.tasks import CANONICAL
from pipeline.errors import PipelineError
from pipeline.models import classifier
from pipeline.models.classifier import predict
from pipeline.io import load_json, load_torch, save_json, save_torch
from pipeline.paths import Paths
from pipeline.runtime import images_to, log, main, setup, skip_if_unavailable
from pipeline.tracking import LiveCurves


@main
def run(dataset: str) -> None:
    cfg = config.load()
    cfg.dataset(dataset)
    device = setup(cfg.seed, cfg.device)
    paths = Paths(dataset)
    launch = distributed.Launch.from_env()
    if not load_json(paths.raw / "status.json")["available"]:  # rank 0 writes the placeholders
        if launch.rank == 0:
            skip_if_unavailable(paths, "train", [paths.models / "trained.pt", paths.models / "train.json",
                                                 paths.checkpoints, paths.plots / "train"])
        return
    if launch.world == 1 and cfg.distributed.nproc > 1:
        log(f"train: relaunching under torchrun with {cfg.distributed.nproc} processes")
        sys.exit(distributed.relaunch_under_torchrun(cfg.distributed.nproc, "pipeline.stages.train", [dataset]))
    if max(launch.world, cfg.distributed.nproc) > 1 and cfg.dataset(dataset).train.r1_gamma > 0:
        raise PipelineError(f"params: '{dataset}.train.r1_gamma' > 0 needs a double backward through D, which "
                            "this pipeline does not run under DDP; set distributed.nproc: 1 or r1_gamma: 0")
    if launch.world > 1:
        device = distributed.init(launch, cfg.distributed.backend, device)
        log(f"train: rank {launch.rank}/{launch.world} on {device} ({dist.get_backend()})")
    try:
        fit(cfg, dataset, paths, device, launch)
    finally:
        if launch.world > 1:
            dist.destroy_process_group()


def fit(cfg: config.Config, dataset: str, paths: Paths, device: torch.device, launch: distributed.Launch) -> None:
    ds = cfg.dataset(dataset)
    e, tc = ds.experts, ds.train
    t = load_torch(paths.prepared / "tensors.pt")
    pre = load_torch(paths.models / "pretrained.pt")
    xc, xt = images_to(t["train_canonical"], device), images_to(t["train_transformed"], device)
    xv, mv = images_to(t["val_transformed"][: tc.check_size], device), t["val_transformed_mech"][: tc.check_size]

    state = loop.start(pre["bank"], e, tc, xt.shape[1], xt.shape[-1], device, cfg.seed, launch)
    bank, disc = state.bank, state.disc

    # Resume only an interrupted run made with these params, inputs and code (pipeline/checkpoint.py).
    saved_clf = load_torch(paths.models / "classifier.pt")
    settings = [config.as_dict(e), config.as_dict(tc), config.as_dict(cfg.distributed), cfg.seed, device.type]
    fp = checkpoint.fingerprint(settings, {"pretrained": pre["bank"], "classifier": saved_clf["state"]},
                                checkpoint.code_files())
    resume, why = checkpoint.resumable(paths.checkpoints, fp)
    if resume is not None:
        state.load_state_dict(resume)
        log(f"train: {why}")
    else:
        log(f"train: training from iteration 0 ({why})")

    lead = launch.rank == 0
    live = LiveCurves(paths.plots / "train") if lead else None   # dvclive; a resumed run's points first
    if live:
        live.update(state.curves, state.iteration)

    def save_checkpoint(s):  # rank 0 only (the loop calls it there)
        checkpoint.save(paths.checkpoints, fp, s.state_dict())
        live.update(s.curves, s.iteration)   # the curves so far, for `dvc exp show` / `dvc plots` mid-run

    # The evaluator watches the check batch's winners (it never touches training): MNIST digit
    # accuracy, faces share judged canonical.
    clf = classifier.load(saved_clf, xt.shape[1], xt.shape[-1], device)
    y_check = t.get("val_transformed_digit", torch.zeros(0))[: tc.check_size].to(device)

    def monitor(out):
        pred = predict(clf, out, 256)
        if saved_clf["task"] == "digit":
            return {"classifier_acc_experts": float((pred == y_check).float().mean())}
        return {"classifier_canonical_rate": float((pred == CANONICAL).float().mean())}

    if lead:
        log(f"train: {e.num_experts} experts ({'batched' if bank.batched else 'per-expert'} form) on {device}, "
            f"{tc.iterations} iterations, assignment {tc.assignment}, {launch.world} process(es)")
    loop.train(state, xc, xt, xv, mv.numpy(), len(t["mechanisms"]), tc, save_checkpoint, log if lead else None, monitor)
    if not lead:
        return

    spec = state.specialized_at
    stats = {"iterations": state.iteration, "seconds": round(state.seconds, 2),
             "iters_per_second": round(state.iteration / state.seconds, 3),
             "iterations_to_specialize": spec[0] if spec else None,
             "train_seconds_to_specialize": round(spec[1], 2) if spec else None,
             **loop.stability(state.curves["specialization/purity_min"], spec[0] if spec else None)}
    live.close(state.curves, state.iteration)
    # The weights to evaluate: the EMA of the experts when train.ema > 0, else the last ones.
    save_torch({"bank": state.eval_bank().cpu().state_dict(), "disc": disc.cpu().state_dict()},
               paths.models / "trained.pt")
    save_json(stats, paths.models / "train.json")
    checkpoint.finish(paths.checkpoints, state.iteration)
    log(f"train: done; {json.dumps(stats)}")


if __name__ == "__main__":
    run()
