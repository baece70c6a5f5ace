"""Data: readers of image/mask datasets (SA-1B layout, plain image folders), mask sources, and
the synthetic scene world (:mod:`loftup.data.scenes`)."""
