"""Benchmarks behind ``viddiff bench``: one module per measurement.

* :mod:`.common`     -- timing (CUDA events / perf_counter), FLOP counting, MFU, peak memory,
  SDPA backend check, device peak table.
* :mod:`.train_step` -- ``bench train``: one training step of a model of this package.
* :mod:`.sampling`   -- ``bench sample``: DDIM sampling throughput.
* :mod:`.data_rate`  -- ``bench data``: MovingShapes render rate vs training consumption.
* :mod:`.peers`      -- ``bench peers``: our U-Net and DiT against peer libraries at matched size.
* :mod:`.install`    -- ``bench constraints``: a pip constraints file that keeps the installed torch.

Every benchmark returns a plain JSON-able dict; ``viddiff_mini.bench`` prints and writes it.
"""
