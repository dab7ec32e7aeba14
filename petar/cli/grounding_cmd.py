"""`petar make-grounding-dataset` and `petar train-grounding`: phantom training data and ConTEXTual Net 3D training."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("petar.cli")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return v


def add_make_grounding_dataset(sub):
    p = sub.add_parser("make-grounding-dataset", help="write a phantom dataset in the grounding training format",
                       description="Synthetic whole-body PET/CT cases, one report sentence per lesion (site, side, "
                                   "SUVmax, axial image), in the nnU-Net-style layout train-grounding reads: "
                                   "imagesTr/<case>_0000.nii.gz (PET, SUV), _0001 (CT, HU), labelsTr/<case>_<k>.nii.gz "
                                   "(one label per sentence), sentences.jsonl, dataset.json.")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist, or be empty)")
    p.add_argument("--cases", type=_positive_int, default=4, help="number of phantom cases (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same dataset")
    p.set_defaults(run=run_make_grounding_dataset)


def run_make_grounding_dataset(args) -> int:
    from ..grounding.dataset_phantom import make_grounding_dataset

    summary = make_grounding_dataset(args.out, cases=args.cases, seed=args.seed)
    print(f"wrote {summary['cases']} cases with {summary['sentences']} sentences to {args.out}")
    return 0


def add_train_grounding(sub):
    p = sub.add_parser("train-grounding", help="train a ConTEXTual Net 3D (text → lesion) on a grounding dataset",
                       description="Train ConTEXTual Net 3D: a PET/CT U-Net (dynamic_network_architectures) whose "
                                   "decoder attends to a frozen BERT/RoBERTa text encoder. DiceCE, AdamW, warm-up + "
                                   "cosine, AMP on CUDA, no augmentation (flips would break laterality), validation "
                                   "F1 after each epoch. Writes an nnU-Net-style folder: plans.json, dataset.json, "
                                   "text_encoder.json, fold_0/checkpoint_latest.pth and checkpoint_final.pth.")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (see make-grounding-dataset)")
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument("--config", choices=("tiny", "default"),
                   help="tiny: CPU smoke network at 6 mm; default: the paper's network, 3 mm, whole-body patch "
                        "(unset: default on CUDA, tiny on CPU; --resume keeps the folder's)")
    p.add_argument("--text-encoder", metavar="ID_OR_DIR",
                   help="local BERT/RoBERTa-family folder or hub id (default StanfordAIMI/RadBERT)")
    p.add_argument("--epochs", type=_positive_int, help="epochs (one pass over the training sentences each; "
                                                        "default from the plans: tiny 20, default 250)")
    p.add_argument("--steps", type=_positive_int, help="stop after this many optimiser steps in total "
                                                       "(with --epochs, whichever comes first)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: CUDA when present")
    p.add_argument("--resume", action="store_true", help="continue from --out's fold_0/checkpoint_latest.pth")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines with -v instead)")
    p.set_defaults(run=run_train_grounding)


def run_train_grounding(args) -> int:
    from ..grounding.contextual.train import train_grounding

    s = train_grounding(args.data, args.out, config=args.config, text_encoder=args.text_encoder, epochs=args.epochs,
                        steps=args.steps, device=args.device, resume=args.resume, progress=not args.no_progress)
    f1 = "n/a" if s["val_f1"] is None else f"{s['val_f1']:.3f}"
    print(f"trained {s['plans_name']} to step {s['steps']}/{s['total_steps']} ({s['epochs']:.1f} epochs) on "
          f"{s['device']} in {s['seconds']:.0f} s; loss {s['first_loss']:.4f} → {s['last_loss']:.4f}; validation "
          f"F1 {f1}, Dice {s['val_dice']:.3f} ({s['validated_on']}) → {s['model_dir']}")
    return 0
