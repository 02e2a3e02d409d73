"""Training DensePose R-CNN as detectron2 does (docs/training.md), on CPU or GPUs (DDP under torchrun).

    from densepose_torch.training import load_train_config, train
    train(load_train_config("configs/default_model.yaml"))      # or: densepose train CONFIG.yaml

    config      the YAML config as frozen dataclasses (TrainConfig, SolverConfig, LossConfig, ...)
    model       the training forward pass: samples in, detectron2's losses out (TrainingModel)
    sampling    anchor / proposal matching and sampling, the DensePose ROI choice
    losses      RPN, box and DensePose chart losses (with UV confidences)
    pooling     RoIAlign that gradients flow through
    init        initial weights, frozen stages, trainable batch norm and its export
    solver      SGD, warmup + steps schedule, gradient clipping
    loop        one resumable loop for the student and the teacher: schedule, NaN check, checkpoints
    trainer     the student's training: stages, data, periodic evaluation, the final weights
    teacher     the distillation teacher (trained through the same loop) and its predictions
    dense_labels  the teacher's dense labels of the training sets
    evaluation  held-out GPS / GPSm / IOU AP and fine-part mIoU
    plot        the loss-curve picture
"""
from .config import TrainConfig, load_train_config
from .trainer import train

__all__ = ["TrainConfig", "load_train_config", "train"]
