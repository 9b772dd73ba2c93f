"""A solver-schedule plugin: the block's solver cycles through a list of members, one per training call.

Deterministic where ``switching`` draws at random: call i solves with member i mod n, so every
member is used equally often over any n consecutive calls. Evaluation solves with the base member.
"""

from collections.abc import Mapping, Sequence

from nde_plugins import Member, hookimpl, parse_method_spec


class Cyclic:
    """Members in turn, one per training call; each is a family-parameter dict or a method name."""

    def __init__(self, members: Sequence) -> None:
        if isinstance(members, (str, Mapping)) or not isinstance(members, Sequence) or not members:
            raise ValueError(f"schedule 'cyclic': members must be a non-empty list of parameter dicts or method "
                             f"names, got {members!r}")
        self._specs = list(members)

    def bind(self, base) -> None:
        """Resolve the members against the block's base solver and refuse any it cannot solve with."""
        self.base = base
        self.cycle = []
        for i, spec in enumerate(self._specs):
            if isinstance(spec, Mapping):
                if base.family is None:
                    raise ValueError(f"schedule 'cyclic': member {i} gives family parameters, but the block's "
                                     f"method {base.method!r} is not a family; name a method instead")
                member = Member(base.method, base.family.resolve(spec))
            elif isinstance(spec, str):
                member = Member(*parse_method_spec(spec))  # "rk4_classic" or "rk2_pair:u=0.5"
            else:
                raise TypeError(f"schedule 'cyclic': member {i} must be a dict of family parameters or a method "
                                f"name, got {spec!r}")
            base.validate(member)  # raises if, e.g., a regularizer needs what the member lacks
            self.cycle.append(member)

    def members(self, state) -> list[Member]:
        """One member for this call: the next in the cycle in training, the base one in evaluation."""
        if not state.training:
            return [self.base.member]
        # state.iteration counts the block's earlier training calls: 0, 1, 2, ...
        return [self.cycle[state.iteration % len(self.cycle)]]


@hookimpl
def register_solver_schedules(register):
    register("cyclic", Cyclic)
