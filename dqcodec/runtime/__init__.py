"""The coding runtime: numpy and constriction only, no torch.

It runs a model's networks from their one definition (``dqcodec.graph``) on the arrays of its weights file
(``weights.read_arrays``): the probability tables in exact fixed point (``dqcodec.fixed``), so they are the
same integers as the torch path's (``dqcodec.exact``), and the synthesis in float32. Arrays are channels
last, (H, W, C), one image at a time.

- ``kernels``: convolutions, transposed convolutions, pixel shuffles and GELU on numpy arrays;
- ``network``: a ``graph`` tree run in float or in exact fixed point over a weights file's arrays;
- ``model``: a DQ model's level chain and synthesis.
"""
