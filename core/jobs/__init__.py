"""Training jobs outside the server: a first-in-first-out queue on disk and one worker daemon.

Why: training inside a Streamlit process shares its interpreter lock and cores with every
page of every student, and dies with that process. Here a job is a JSON file under the runs
root (:mod:`core.jobs.queue`), so every server process sees the same queue, and one daemon per
machine (:mod:`core.jobs.daemon`, a lock file) trains them in child processes, in order.
"""
