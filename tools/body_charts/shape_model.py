"""Body shapes: a PCA of rest vertices + joints over bodies drawn from anny's calibrated
phenotype distribution."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import Body
from .skeleton import KEPT_JOINTS

MIN_AGE, MAX_AGE = 8.0, 90.0  # morphological ages drawn, in years


@dataclass
class ShapeModel:
    mean: np.ndarray  # (V + J, 3) mean rest vertices, then rest joints
    basis: np.ndarray  # (K, V + J, 3) PCA directions scaled so the coefficients have unit variance
    coeffs: np.ndarray  # (N, K) coefficients of the sampled bodies
    phenotypes: np.ndarray  # (N, P) anny phenotype values of the sampled bodies
    phenotype_labels: list[str]  # (P,)


def pca(x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of the rows of x (N, D): mean (D,), basis (rank, D) and coefficients
    (N, rank) with x ~ mean + coeffs @ basis. Each basis row is a principal direction times the
    standard deviation along it, so the coefficients of x have unit variance."""
    samples = len(x)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    scale = s[:rank] / np.sqrt(samples)
    basis = vt[:rank] * scale[:, None]
    coeffs = (x - mean) @ vt[:rank].T / scale
    return mean, basis, coeffs


def shape_space(model, body: Body, samples: int, rank: int) -> ShapeModel:
    """PCA of rest vertices + joint heads over `samples` bodies drawn from anny's calibrated
    phenotype distribution (morphological age MIN_AGE to MAX_AGE), seeded; prints the
    reconstruction error."""
    import torch
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(0)
    ages = torch.distributions.Uniform(torch.tensor(MIN_AGE, dtype=torch.float64), torch.tensor(MAX_AGE, dtype=torch.float64))
    dist = SimpleShapeDistribution(model, morphological_age_distribution=ages)
    _, phenotypes = dist.sample(samples)
    labels = list(model.phenotype_labels)
    with torch.no_grad():
        out = model(phenotype_kwargs={k: phenotypes[k] for k in labels})
    verts = out["rest_vertices"].double().numpy()[:, body.anny_vertex]
    names = list(model.bone_labels)
    heads = out["rest_bone_heads"].double().numpy()[:, [names.index(j) for j in KEPT_JOINTS]]
    x = np.concatenate([verts, heads], axis=1).reshape(samples, -1)
    mean, basis, coeffs = pca(x, rank)
    recon = mean + coeffs @ basis
    err = np.linalg.norm((recon - x).reshape(samples, -1, 3)[:, : len(body.rest)], axis=2)
    print(f"shape PCA rank {rank}: vertex error mean {err.mean() * 1000:.2f} mm, "
          f"99th percentile {np.percentile(err, 99) * 1000:.2f} mm, max {err.max() * 1000:.1f} mm")
    pheno = np.stack([phenotypes[k].numpy() for k in labels], axis=1)
    return ShapeModel(mean.reshape(-1, 3), basis.reshape(rank, -1, 3), coeffs, pheno, labels)
