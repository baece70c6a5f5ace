"""Data: readers of image/mask datasets (SA-1B layout, plain image folders) and mask sources."""
