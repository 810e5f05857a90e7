"""The stages of the loop, in order (docs/architecture.md):

    mine/            tasks from a user's own repository                  -> a task file
    gentests/        tests for tasks with a reference and no tests       -> a task file
    attempt.py    1  the student attempts every task                     -> attempts.jsonl
    execute.py    2  each attempt runs against its task's hidden tests   -> executions.jsonl
    direct.py        the teacher answers tasks from scratch (StanD, InpD) -> direct.jsonl
    differential.py  passing answers run on generated inputs, where the  -> differential.jsonl
                     reference and a second verified solution agree
    refine/     3-4  the teacher refines each failed attempt, verified   -> refinements.jsonl
    build/        5  the data sets of the chosen methods (methods.py)    -> data/<method>/
    score.py         the teacher's log-probabilities on the student's    -> a `score` data set
                     own failed answers (token-level distillation)
    train/        6  a LoRA adapter per data set                         -> train/<method>/
    evaluate.py   7  pass@k, one step and after self-repair              -> eval/<model>/<bench>/
    report/          evaluations side by side, paired, the paper's claims -> report/

collect.py runs 1-5 in one run directory; experiment.py (`localdistill run`) runs them all.
"""
