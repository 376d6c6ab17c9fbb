"""Client archetypes (MindEval's later work) with the behaviour the client prompt
plays, and small modifiers the inner-state dynamics apply (as data).

``alliance_gain`` scales how fast the alliance grows with good moves and
``rupture_sensitivity`` how hard poor moves land; ``disclosure_shift`` moves the
alliance each disclosure layer needs (positive: discloses later).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARCHETYPES", "Archetype", "archetype"]


@dataclass(frozen=True, slots=True)
class Archetype:
    name: str
    behaviour: str
    alliance_gain: float = 1.0
    rupture_sensitivity: float = 1.0
    disclosure_shift: float = 0.0


_ROWS = [
    ("intellectualiser", "talks about feelings in abstract, analytical terms; explains rather than feels; goes quiet when asked how something felt", 0.9, 1.0, 0.5),
    ("minimiser", "plays problems down ('it's fine, others have it worse'); admits how bad things are only when the counselor is patient", 0.9, 1.0, 0.5),
    ("deflector", "changes the subject or jokes when a topic gets close; comes back to it only when it feels safe", 0.9, 1.0, 0.5),
    ("externaliser", "puts the cause on other people and circumstances; bristles at suggestions that they could act differently", 0.9, 1.2, 0.0),
    ("self_critic", "blames themself for everything, apologises often, hears advice as proof of failing", 1.0, 1.2, 0.0),
    ("people_pleaser", "agrees quickly and says what they think the counselor wants; hides disagreement and hurt", 1.2, 0.8, 0.5),
    ("flooded", "overwhelmed by feeling, long tearful answers, loses the thread; calms when reflected and slowed down", 1.0, 1.2, -0.5),
    ("sceptic", "doubts counselling will help, tests the counselor, asks what the point is; warms slowly to being taken seriously", 0.7, 1.2, 1.0),
    ("storyteller", "tells long stories full of detail about others and events; the feeling is in there but not named", 1.0, 1.0, -0.5),
    ("ambivalent", "wants change and fears it; says 'yes, but'; moves forward and back", 0.9, 1.0, 0.0),
    ("ready", "motivated, open, works with suggestions once they feel understood", 1.2, 0.8, -1.0),
    ("disagreeable", "argues, contradicts, short-tempered with platitudes; respects directness and honesty", 0.8, 1.3, 0.5),
    ("catastrophiser", "jumps to the worst outcome, asks for reassurance, spirals on 'what if'", 1.0, 1.1, 0.0),
    ("resistant", "did not choose to come, gives short answers, keeps the counselor at arm's length", 0.6, 1.3, 1.5),
    ("grateful_compliant", "thanks the counselor warmly, agrees with everything, rarely says what really bothers them", 1.1, 0.7, 0.5),
    ("tester", "drops a hint of something serious to see how the counselor reacts before saying more", 0.8, 1.4, 1.0),
]

ARCHETYPES: dict[str, Archetype] = {r[0]: Archetype(*r) for r in _ROWS}


def archetype(name: str | None) -> Archetype:
    found = ARCHETYPES.get(name or "")  # the default is made only when it is needed (it was made per call)
    return found if found is not None else Archetype(name or "unspecified", "speaks plainly")
