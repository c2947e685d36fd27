"""Camera vs object motion on request for msh-first-frame, under its sampling-time options.

    python scripts/first_frame_motion_requests.py [--name msh-first-frame] [--n 32] [--steps 25] [--out FILE]

Runs :func:`viddiff_mini.metrics.control.motion_request_report` (32 held-out Move images,
each asked for object or camera motion along its own motion and against it, and for
object motion against it scaled to stay in the frame) with the
camera request encoded without moving the image (what the model trained on), with it
(the default), and with the motion request's own nested guidance scale at 4, 8 and 16.
About 3 minutes per row on one CPU thread (the guided rows take three passes a step).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from viddiff_mini.metrics.control import motion_request_report
from viddiff_mini.train import load_run

ROWS = {"camera_warp=False": dict(camera_warp=False),
        "default (camera_warp=True)": dict(),
        "motion_guidance=4": dict(motion_guidance=4.0),
        "motion_guidance=8": dict(motion_guidance=8.0),
        "motion_guidance=16": dict(motion_guidance=16.0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="msh-first-frame", help="a first-frame generator or run folder")
    p.add_argument("--n", type=int, default=32, help="held-out Move images")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--out", help="default: RUN/first-frame-motion-requests.json for a run "
                                 "folder, results/first-frame-motion-requests[-suffix].json for "
                                 "msh-first-frame[-suffix]")
    args = p.parse_args()
    model, diffusion, cfg = load_run(args.name)
    if args.out is None:   # a run's report stays with the run: never over a shipped result
        args.out = str(Path(args.name) / "first-frame-motion-requests.json") \
            if Path(args.name).is_dir() else \
            f"results/first-frame-motion-requests{args.name.removeprefix('msh-first-frame')}.json"
    results = {}
    for name, kw in ROWS.items():
        t0 = time.time()
        r = motion_request_report(model, diffusion, cfg, n=args.n, steps=args.steps, **kw)
        results[name] = {k: round(v, 4) for k, v in r.items()}
        print(f"{name:28s} split {r['motion_split_acc']:.3f} / against {r['motion_split_acc_against']:.3f}"
              f"  followed {r['motion_followed_acc']:.3f}  object against "
              f"{r['against_object_request_object_err_px']:.2f} px  in frame: right way "
              f"{r['against_inframe_direction_acc']:.3f}, followed {r['against_inframe_followed_acc']:.3f}"
              f"  ({time.time() - t0:.0f} s)",
              flush=True)
    out = {"what": f"{args.name}, motion_request_report: {args.n} held-out Move images, DDIM "
                   f"{args.steps} steps, guidance {cfg.guidance:g}, seed 0",
           "command": "python scripts/first_frame_motion_requests.py "
                      f"--name {args.name} --n {args.n} --steps {args.steps}",
           "machine": f"{platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}",
           "date": time.strftime("%Y-%m-%d"), "results": results}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
