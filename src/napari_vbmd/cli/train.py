"""`vbmd train DATA -o CHECKPOINT_DIR`: train or fine-tune a segmentation network."""
from __future__ import annotations

import json
import math
import sys

from ..errors import VbmdError
from ._common import positive_int
from ._output import print_json, print_table


def _floats(text: str, n_allowed=(1, 3)) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise VbmdError(f"expected comma-separated numbers, got {text!r}") from None
    if len(values) not in n_allowed:
        raise VbmdError(f"expected {' or '.join(map(str, n_allowed))} numbers, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise VbmdError(f"expected finite numbers, got {text!r}")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a segmentation network on image/mask pairs",
        description="Train on a folder of pairs (<case>.aim + <case>_mask.aim, or <case>.gobj; NIfTI/TIFF "
        "alike) or a CSV with columns image,mask[,patient]. Patients are split 70/20/10 (seeded; "
        "split.json); the best checkpoint by validation Dice is written as DIR/best.json + .safetensors.",
    )
    p.add_argument("data", help="folder of pairs or CSV")
    p.add_argument("-o", "--output", required=True, help="checkpoint folder (created)")
    p.add_argument("--architecture", default="unet2d_small",
                   choices=["unet2d_small", "unet2d_resnet34", "unet3d_isensee"],
                   help="unet2d_resnet34 / unet3d_isensee = the study's networks; unet2d_small = the default's")
    p.add_argument("--kwargs", default="{}", help='architecture settings as JSON, e.g. \'{"base": 16}\'')
    p.add_argument("--spacing-mm", default="0.25", help="working voxel size: one number (isotropic) or z,y,x")
    p.add_argument("--patch", default=None, help="training patch in working voxels: h,w (2D; default 160,160) "
                   "or z,h,w (3D; default 48,128,128)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass over the slices)")
    p.add_argument("--batch-size", type=positive_int, help="default: the study's (2D 4, 3D 1)")
    p.add_argument("--lr", type=float, help="Adam learning rate; default: the study's (2D 1e-5, 3D 1e-4)")
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                   help="constant, or cosine: from --lr down to a hundredth of it at the last epoch")
    p.add_argument("--warmup-epochs", type=int, default=0,
                   help="raise the learning rate linearly to --lr over this many first epochs")
    p.add_argument("--grad-clip", type=float, metavar="NORM",
                   help="clip the gradients' total L2 norm to NORM before each step")
    p.add_argument("--loss", default="dice", choices=["dice", "dice_bce"],
                   help="dice = the study's Dice loss; dice_bce adds binary cross-entropy (faster convergence)")
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument("--average-from", type=int, metavar="EPOCH",
                   help="stochastic weight averaging: from this epoch on, validate and keep the average of the "
                   "weights after each epoch (steadier than the raw weights at a constant learning rate)")
    p.add_argument("--flips", default="none", choices=["none", "rot180", "all"],
                   help="flip augmentation (default none: every hand is turned into a right hand, and a mirror "
                   "flip would put MC3 where MC2 belongs; rot180 keeps the hand's chirality; all = the study's flips)")
    p.add_argument("--appearance", default="standard", choices=["standard", "broad", "broad-half"],
                   help="2D networks: broad adds wider blur, weaker/stronger fine texture, compressed bone contrast, "
                   "a smooth bias field and correlated noise to the standard augmentation (the mask never changes); "
                   "broad-half gives those changes to half of the samples (each with probability 1/2)")
    p.add_argument("--context-mm", type=float, nargs="+", default=[0.0], metavar="MM",
                   help="2D networks: slices given to the network as input channels, as offsets in mm along z "
                   "from the slice being segmented (default 0 = the slice alone; e.g. -4 -2 0 2 4 lets it see "
                   "which side of the joint a slice lies on)")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation, batches and augmentation (and the "
                   "patient split unless --split-seed is given)")
    p.add_argument("--split-seed", type=int, help="seed of the patient split (default: --seed); runs that share it "
                   "share their validation phantoms, as the members of an ensemble must")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold stored in the checkpoint")
    p.add_argument("--name", default="model", help="model name stored in the checkpoint")
    p.add_argument("--max-minutes", type=float, help="stop after the epoch that exceeds this time")
    p.add_argument("--validate-every", type=int, default=1, metavar="N",
                   help="validate every N-th epoch and the last (each validation runs the pipeline on every "
                   "validation case; the best checkpoint is chosen among validated epochs)")
    p.add_argument("--stop-after", type=int, metavar="EPOCH",
                   help="end this run after EPOCH (validated) while the learning-rate schedule stays that of "
                   "--epochs, so a run can be reproduced up to a given epoch or continued with --resume")
    p.add_argument("--init", help="fine-tune from this checkpoint (its architecture, grid and statistics)")
    p.add_argument("--resume", action="store_true", help="continue a run in the output folder")
    p.add_argument("--encoder-weights", help="local torchvision ResNet34 ImageNet weights (.safetensors, or .pth "
                   "read tensors-only), relative to the folder you run vbmd in")
    p.add_argument("--imagenet-online", action="store_true", help="let segmentation_models_pytorch download ImageNet weights")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int, help="CPU threads (at least 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..segmentation.training import TrainSettings, train

    from pathlib import Path

    from .._atomic import check_output_folder

    check_output_folder(Path(args.output))  # created by the run once its settings and data check out
    encoder_weights = None
    if args.encoder_weights:  # resolved now, from where the user typed it, and recorded as such
        encoder_weights = str(Path(args.encoder_weights).expanduser().resolve())
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError:
        raise VbmdError(f"--kwargs is not JSON: {args.kwargs!r}") from None
    if not isinstance(kwargs, dict):
        raise VbmdError("--kwargs must be a JSON object")
    spacing = _floats(args.spacing_mm)
    spacing = spacing * 3 if len(spacing) == 1 else spacing
    dims = 3 if args.architecture == "unet3d_isensee" else 2
    patch = _floats(args.patch, (dims,)) if args.patch else ((160, 160) if dims == 2 else (48, 128, 128))
    if any(v != int(v) for v in patch):
        raise VbmdError(f"--patch sizes must be whole numbers, got {args.patch!r}")
    patch = tuple(int(v) for v in patch)
    settings = TrainSettings(
        architecture=args.architecture, kwargs=kwargs, spacing_mm=spacing, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, lr=args.lr, patch=patch,
        augment=not args.no_augment, flips=args.flips, appearance=args.appearance, average_from=args.average_from,
        loss=args.loss,
        context_mm=tuple(args.context_mm), lr_schedule=args.lr_schedule, warmup_epochs=args.warmup_epochs,
        grad_clip=args.grad_clip, seed=args.seed, split_seed=args.split_seed, threshold=args.threshold, name=args.name,
        max_minutes=args.max_minutes, validate_every=args.validate_every,
        stop_after=args.stop_after, init=args.init, encoder_weights_path=encoder_weights,
        imagenet_online=args.imagenet_online,
    )
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    summary = train(args.data, args.output, settings, device=args.device, resume=args.resume,
                    show_progress=not args.quiet and sys.stderr.isatty(), log=log)
    if args.json:
        print_json(summary)
    else:
        print_table([(k, v) for k, v in summary.items() if k != "best_metrics"])
    return 0
