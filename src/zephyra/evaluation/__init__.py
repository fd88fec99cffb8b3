"""Evaluation: metrics now; tasks, the isolation matrix and reports come later."""
