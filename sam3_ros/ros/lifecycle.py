"""Lifecycle requests checked before they reach rclpy's state machine (rclpy-free)."""
from __future__ import annotations


def transition_refusal(available: list[tuple[int, str]], transition_id: int, label: str,
                       state: str) -> str | None:
    """Why a ChangeState request cannot run now, or None when it can.

    ``available`` holds the (id, label) pairs valid in ``state``. A request names its transition
    by label (``ros2 lifecycle set``) or, with an empty label, by id (launch's ChangeState,
    lifecycle managers).
    """
    names = ", ".join(f"{name} ({tid})" for tid, name in available) or "none"
    if label:
        if any(name == label for _, name in available):
            return None
        return f"transition {label!r} is not valid in state {state!r}; valid: {names}"
    if any(tid == transition_id for tid, _ in available):
        return None
    return f"transition id {transition_id} is not valid in state {state!r}; valid: {names}"
