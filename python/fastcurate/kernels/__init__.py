"""The Python API of the C++ kernels (``fastcurate._core``): matching, counting and balancing,
and the kernels of the later stages. Each module validates its inputs and releases the GIL."""
