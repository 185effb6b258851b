"""The reference worker (``device``, ``loops``, ``jobs``, ``server``, ``cli``) and the one
client of its job API (``client.WorkerClient``)."""
