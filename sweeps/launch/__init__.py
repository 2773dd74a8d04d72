"""Launching a sweep's workers onto an existing cluster engine: Ray, Slurm, Kubernetes.

The project never schedules, places or restarts workers itself beyond one machine
(``sweeps run``, :mod:`sweeps.launcher`): each module here hands N ordinary
``sweeps worker`` processes to an engine that already does that job, and the database
stays the one source of truth, so a worker the engine restarts is just another worker
joining the sweep.

- :mod:`sweeps.launch.request`: what every launcher shares (the resolved spec, storage,
  name, total and worker count; the ``sweeps worker`` command line and environment).
- :mod:`sweeps.launch.ray`: one Ray task per worker, with ``num_gpus`` / ``num_cpus``;
  Ray's task retries restart a lost worker.
- :mod:`sweeps.launch.slurm`: a Slurm job array through submitit; preemption re-queues.
- :mod:`sweeps.launch.kubernetes`: manifests (PostgreSQL, an Indexed Job of workers,
  optuna-dashboard) rendered for a spec.
- :mod:`sweeps.launch.supervision`: running one ``sweeps worker`` as a child process of an
  engine's task, which both the Ray and the Slurm launchers do.
"""
