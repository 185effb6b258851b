"""The service: the seed API on Starlette over NVML, the Monitoring Service or virtual GPUs."""
