"""Reference counselors for control arms: deterministic LangChain chat models that
stand in at the counselor role from config (``provider: scripted``, ``model:``
``dismissive`` | ``eliza`` | ``supportive``), so the graph is unchanged.

* ``dismissive`` minimises, advises prematurely and ignores risk cues;
* ``eliza`` reflects the client's words back and does nothing else (Weizenbaum 1966);
* ``supportive`` validates, reflects, explores, and asks about safety when the
  client's words carry a risk cue.

The reply depends only on the client's last utterance and the exchange number
(a hash picks among templates), never on randomness.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from therasim.errors import TherasimError
from therasim.policies.appraisal import has_risk_cue

__all__ = ["SCRIPTED_STYLES", "ScriptedCounselor", "reply_for"]

SCRIPTED_STYLES = ("dismissive", "eliza", "supportive")

_STOP = set(
    "i me my myself we our you your he she it they them a an the and or but so if then that this these those is am are was were be been being "
    "have has had do does did not no to of in on at for with about as by from up down out over just really very much more most some any all "
    "can could would should will shall may might must than too also again still even ever because what when where which who how why there here "
    "feel feeling felt think know like get got go going im its dont cant ive".split()
)
_FEELINGS = (
    "exhausted", "tired", "anxious", "worried", "scared", "afraid", "sad", "down", "low", "angry", "frustrated", "lonely", "alone",
    "ashamed", "guilty", "hopeless", "stuck", "overwhelmed", "numb", "stressed", "panicky", "empty", "hurt", "useless", "worthless",
)
_SWAP = {"i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "am": "are", "i'm": "you're", "im": "you're", "i've": "you've", "ive": "you've", "i'd": "you'd", "i'll": "you'll", "was": "were"}


def _last_client(messages: Sequence[BaseMessage]) -> tuple[str, int]:
    """The client's last utterance in the rendered transcript, and how many counselor turns came before."""
    text = str(messages[-1].content) if messages else ""
    lines = re.findall(r"^Client(?: \(you\))?: (.*)$", text, re.MULTILINE)
    turns = len(re.findall(r"^Counselor(?: \(you\))?: ", text, re.MULTILINE))
    return (lines[-1].strip() if lines else ""), turns


def _topic(text: str) -> str:
    words = [w for w in re.findall(r"[a-z']+", text.lower()) if w not in _STOP and len(w) > 3 and w not in _FEELINGS]
    return max(words, key=len) if words else "what has been happening"


def _feeling(text: str) -> str:
    low = text.lower()
    for f in _FEELINGS:
        if re.search(rf"\b{f}\b", low):
            return f
    return "worn down"


def _mirror(text: str, max_words: int = 14) -> str:
    first = re.split(r"(?<=[.!?])\s+", text.strip())[0].rstrip(".!?")
    words = [_SWAP.get(w.lower(), w) for w in first.split()][:max_words]
    out = " ".join(words)
    return out[0].lower() + out[1:] if out else "things have been hard"


def _pick(options: Sequence[str], key: str) -> str:
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big")
    return options[h % len(options)]


def reply_for(style: str, client_text: str, turn: int) -> str:
    """The scripted counselor's reply to the client's last utterance."""
    key = f"{style}|{turn}|{client_text}"
    topic, feeling, mirror = _topic(client_text), _feeling(client_text), _mirror(client_text)
    if style == "dismissive":
        minimise = ["Everyone feels like that sometimes.", "Honestly, that's not a big deal.", "Lots of people have it worse, you know.", "Try not to overthink it.", "It could be worse."]
        advise = ["You should just get more sleep and stay positive.", "Just try to focus on the bright side.", "You need to get out more and stop worrying.", "Have you tried going for a run? Just get on with it.", "You should move on and keep busy."]
        return f"{_pick(minimise, key + 'm')} {_pick(advise, key + 'a')}"
    if style == "eliza":
        if not client_text:
            return "Tell me what brings you here."
        return _pick([f"You say {mirror}.", f"You feel {feeling}.", f"{mirror[0].upper() + mirror[1:]}.", f"You are talking about {topic}."], key)
    if style == "supportive":
        if not client_text:
            return "Thank you for coming in today. What would you like us to focus on?"
        if has_risk_cue(client_text):
            return (
                "Thank you for telling me that; it sounds like things have felt unbearable. I want to check how safe you are: "
                "are you having thoughts of ending your life or hurting yourself right now?"
            )
        validate = ["That sounds really hard.", "That makes a lot of sense, given everything.", "No wonder you feel this way.", "That is a lot to carry on your own."]
        reflect = [f"It sounds like you feel {feeling} about {topic}.", f"You feel {feeling}, and {topic} is weighing on you.", f"What I'm hearing is that {mirror}."]
        explore = [f"Can you tell me more about {topic}?", "What was that like for you?", f"How has {topic} been affecting your days?", "What goes through your mind when that happens?"]
        return f"{_pick(validate, key + 'v')} {_pick(reflect, key + 'r')} {_pick(explore, key + 'e')}"
    raise TherasimError(f"unknown scripted counselor {style!r}; choose one of {', '.join(SCRIPTED_STYLES)}")


class ScriptedCounselor(BaseChatModel):
    """A deterministic reference counselor (see the module docstring)."""

    style: str = "supportive"
    therasim_dialect: str = "prompt"

    @property
    def _llm_type(self) -> str:
        return f"therasim-scripted-{self.style}"

    def _result(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        if kwargs.get("response_format") is not None:
            raise TherasimError(
                f"the scripted counselor {self.style!r} only writes counselor replies; give the other roles (analysts, client, judge) a real model"
            )
        client_text, turn = _last_client(messages)
        text = reply_for(self.style, client_text, turn)
        n_out = len(text.split())
        msg = AIMessage(content=text, usage_metadata={"input_tokens": 0, "output_tokens": n_out, "total_tokens": n_out}, response_metadata={"model_name": f"scripted:{self.style}"})
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return self._result(messages, kwargs)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return self._result(messages, kwargs)
