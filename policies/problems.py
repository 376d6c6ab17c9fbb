"""Presenting-problem templates for the profile sampler, as data.

Each template carries a cognitive model in the style of PATIENT-Ψ (relevant
history, core beliefs in Beck's helpless/unlovable/worthless families,
intermediate beliefs, coping strategies, situations with automatic thought,
emotion and behaviour), the pieces of a 5P formulation, and what the sampler
conditions on the problem: risk factors with their probabilities, the chance of
a self-harm history, secrets, severity ranges of the starting state and the
archetypes that fit. Written in the words clients and clinicians use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PROBLEMS", "ProblemTemplate"]


@dataclass(frozen=True)
class ProblemTemplate:
    key: str
    presenting: str
    goals: tuple[str, ...]
    feelings: str
    history: tuple[str, ...]  # one drawn
    precipitant: tuple[str, ...]  # one drawn
    families: tuple[str, ...]
    core_beliefs: tuple[str, ...]
    intermediate: tuple[str, ...]
    coping: tuple[str, ...]
    situations: tuple[tuple[str, str, str, str], ...]  # situation, automatic thought, emotion, behaviour
    triggers: tuple[str, ...]
    perpetuating: str
    protective: tuple[str, ...]
    risk_factors: tuple[tuple[str, float], ...]  # (factor, probability)
    p_risk_history: float
    risk_history: tuple[str, ...]
    secrets: tuple[str, ...]
    severity: dict[str, tuple[int, int]] = field(default_factory=dict)  # starting distress, hopelessness, anxiety, self_efficacy
    archetypes: tuple[str, ...] = ()


PROBLEMS: tuple[ProblemTemplate, ...] = (
    ProblemTemplate(
        "depression_job_loss",
        "low mood and loss of interest since losing my job",
        ("get some structure back into my days", "feel like myself again", "start applying for work"),
        "Mornings are the worst; most days feel flat and heavy, and things that used to be fun feel pointless. Sleeps late, skips meals, avoids friends who ask about work.",
        ("Grew up with a father who judged people by their jobs; work was where they felt they mattered.", "Had a bout of low mood at university that passed without help."),
        ("was made redundant eight months ago after twelve years at the same company", "lost their job in a restructuring last spring and has not found another"),
        ("worthless", "helpless"),
        ("I am a failure", "I am useless without a job"),
        ("If I am not providing, I have no value", "Asking for help means I have failed", "I should be able to sort this out on my own"),
        ("staying in bed until late", "avoiding phone calls from friends", "scrolling job sites for hours without applying"),
        (
            ("A former colleague posts about a promotion", "Everyone has moved on except me", "shame", "closes the app and stays in bed the rest of the day"),
            ("Their partner asks how the job search is going", "They think I am lazy", "defensive and low", "snaps, then goes quiet for the evening"),
            ("A job advert looks like a good fit", "They would never pick me", "hopeless", "does not apply"),
        ),
        ("questions about work", "Monday mornings", "bills arriving"),
        "withdrawal and inactivity keep the mood low and confirm the belief of being useless",
        ("a partner who stays supportive", "a dog that needs walking", "a sense of humour that still shows up"),
        (("social isolation", 0.5), ("money worries", 0.6), ("family history of depression", 0.3), ("drinking more than before", 0.25)),
        0.3,
        ("Had thoughts of not wanting to wake up during the worst weeks last winter; never acted on them.", "Once looked up ways to end it after a rejection email, then closed the laptop and told no one."),
        ("has not told their partner how much savings are left", "sometimes thinks the family would be better off without them", "has been pretending to go to interviews"),
        {"distress": (6, 9), "hopelessness": (5, 8), "anxiety": (3, 6), "self_efficacy": (1, 4)},
        ("minimiser", "self_critic", "resistant", "ambivalent", "sceptic"),
    ),
    ProblemTemplate(
        "generalised_worry",
        "constant worry about health and family that I can't switch off",
        ("worry less", "sleep through the night", "stop checking my phone all the time"),
        "Feels on edge most of the day, tense shoulders, a knot in the stomach; every late text or unexplained ache becomes a disaster in their mind.",
        ("Grew up with a mother who was often ill; learned early to watch for trouble.", "Was the responsible one among siblings and still feels in charge of everyone's safety."),
        ("has worried far more since a parent's heart scare last year", "started worrying constantly after a friend's sudden illness two years ago"),
        ("helpless",),
        ("Something bad is going to happen", "I cannot cope if things go wrong"),
        ("If I worry about it, I can prevent it", "If I relax, something will go wrong", "I must always be prepared"),
        ("checking on family by phone several times a day", "searching symptoms online", "asking for reassurance"),
        (
            ("Their teenager is late home and not answering", "Something terrible has happened", "panic", "calls every friend and hospital nearby"),
            ("Notices a headache at work", "It could be a tumour", "fear", "spends the evening reading about brain tumours"),
            ("Lying in bed at night", "I forgot something important", "anxiety", "gets up to check emails at 2am"),
        ),
        ("unanswered calls", "health news", "night time"),
        "checking and reassurance bring brief relief and keep the worry going",
        ("a close friend they can talk to", "enjoys gardening", "has handled real crises well before"),
        (("family history of anxiety", 0.5), ("poor sleep", 0.7), ("caring responsibilities", 0.4)),
        0.08,
        ("Once, in a very bad week, wished they could disappear for a while; no thoughts of harming themself.",),
        ("takes a relative's sleeping tablets some nights", "worries they are going mad and has told no one", "had a panic attack while driving their children"),
        {"distress": (5, 8), "hopelessness": (2, 5), "anxiety": (7, 10), "self_efficacy": (3, 5)},
        ("catastrophiser", "flooded", "people_pleaser", "intellectualiser"),
    ),
    ProblemTemplate(
        "panic",
        "panic attacks on public transport and in crowded places",
        ("get back on the train to work", "understand what is happening in my body"),
        "Dreads the commute; heart pounding, dizzy, sure they will faint or lose control. Plans routes around escape exits.",
        ("Always a nervous child; school trips made them sick with worry.", "A period of heavy work stress before the first attack."),
        ("had a first attack on a crowded train six months ago", "started having attacks after a stressful house move"),
        ("helpless",),
        ("I will lose control", "I am weak"),
        ("If people see me panic, they will think I am crazy", "I must avoid situations where I cannot escape"),
        ("avoiding trains and buses", "sitting near exits", "carrying water and checking their pulse"),
        (
            ("The train stops between stations", "I am going to pass out and everyone will stare", "terror", "gets off at the next stop and walks the rest"),
            ("A friend suggests a concert", "I will have an attack and ruin it", "anxiety", "makes an excuse and stays home"),
            ("Heart beats fast after climbing stairs", "This is a heart attack", "fear", "sits down and googles symptoms"),
        ),
        ("crowds", "trains", "a racing heart"),
        "avoidance and safety behaviours stop them learning the attacks are not dangerous",
        ("a supportive sibling", "runs on weekends when calm", "curious about how the body works"),
        (("avoidance narrowing their life", 0.6), ("caffeine and energy drinks", 0.3), ("work stress", 0.5)),
        0.05,
        ("No history of self-harm; felt hopeless once after a bad month of attacks.",),
        ("has been calling in sick to avoid the commute", "drinks before social events to get through them", "is afraid they have a heart condition and has not seen a doctor"),
        {"distress": (5, 8), "hopelessness": (2, 5), "anxiety": (7, 10), "self_efficacy": (2, 5)},
        ("catastrophiser", "intellectualiser", "ready", "flooded"),
    ),
    ProblemTemplate(
        "grief",
        "grief after my mother died; I can't seem to get going again",
        ("be able to talk about her without falling apart", "get back to normal life"),
        "Waves of sadness and guilt, often at night; keeps her things untouched. Feels numb at work and cries in the car.",
        ("Was their mother's main carer for the last two years of her illness.", "Lost their father young; the family never talked about it."),
        ("lost their mother four months ago after a long illness", "lost their mother suddenly in the spring"),
        ("worthless", "unlovable"),
        ("I should have done more", "I am alone now"),
        ("If I stop grieving, I am forgetting her", "Other people do not want to hear about it", "I have to be strong for the family"),
        ("keeping busy every minute", "avoiding her house", "visiting the grave daily"),
        (
            ("Finds her handwriting on a shopping list", "I never told her how much she meant", "grief", "sits on the floor for an hour"),
            ("A friend asks how they are", "They do not really want to know", "lonely", "says 'fine' and changes the subject"),
            ("Her birthday is coming up", "I cannot face it", "dread", "plans to work all day"),
        ),
        ("anniversaries", "old photos", "hospital smells"),
        "avoiding reminders and keeping the grief private stop it from being worked through",
        ("a partner who is patient", "faith", "old friends who keep calling"),
        (("recent loss", 1.0), ("social isolation", 0.4), ("drinking more than before", 0.2), ("poor sleep", 0.6)),
        0.2,
        ("In the first weeks after the death thought it would be easier not to be here; told no one.",),
        ("feels relief that the caring is over and is ashamed of it", "argued with their mother the day before she died", "has been drinking her leftover wine most nights"),
        {"distress": (6, 9), "hopelessness": (4, 7), "anxiety": (3, 6), "self_efficacy": (3, 5)},
        ("storyteller", "minimiser", "grateful_compliant", "flooded"),
    ),
    ProblemTemplate(
        "alcohol",
        "drinking more to cope with stress; my GP suggested talking to someone",
        ("cut down drinking", "sleep without a drink", "stop the arguments at home"),
        "Looks forward to the first drink from lunchtime; evenings blur. Mornings bring shame and a promise that does not last.",
        ("Father drank heavily; home was unpredictable.", "Drank socially for years; it crept up during a hard stretch at work."),
        ("has doubled their drinking since a divorce last year", "started drinking every night when work pressure rose"),
        ("helpless", "worthless"),
        ("I cannot cope without a drink", "I am a disappointment"),
        ("If I stop drinking I will fall apart", "I can handle it myself", "Talking does not fix anything"),
        ("drinking alone in the evenings", "hiding bottles", "minimising how much they drink"),
        (
            ("An argument with their ex about the children", "I cannot take this", "anger", "opens a bottle of wine"),
            ("Wakes up not remembering the night before", "I am just like my father", "shame", "promises never again, drinks again that evening"),
            ("The GP asks about units", "They are judging me", "defensive", "halves the number they report"),
        ),
        ("weekends alone", "arguments", "payday"),
        "drinking numbs the stress short term and adds to the problems that cause it",
        ("children they love", "a job they are still good at", "a brother who does not drink"),
        (("heavy drinking", 1.0), ("recent loss", 0.4), ("social isolation", 0.5), ("money worries", 0.3)),
        0.35,
        ("Passive death wishes in the past after heavy nights; once took extra pills with alcohol and told no one.", "On bad nights thinks about driving off the road; has never done anything about it."),
        ("drives after drinking some nights", "thinks the children would be better off without them", "keeps a bottle in the car"),
        {"distress": (5, 8), "hopelessness": (4, 8), "anxiety": (3, 7), "self_efficacy": (2, 5)},
        ("sceptic", "minimiser", "externaliser", "resistant", "deflector"),
    ),
    ProblemTemplate(
        "relationship_loneliness",
        "conflict with my partner and feeling lonely even at home",
        ("feel closer to people", "argue less", "know what I want from the relationship"),
        "Evenings are silent or tense; feels invisible and unwanted, replays arguments for days.",
        ("Parents divorced when they were nine; learned to keep quiet to keep the peace.", "Previous partner left suddenly; they never understood why."),
        ("has felt the relationship strain since the birth of their child", "has been arguing with their partner since they moved in together two years ago"),
        ("unlovable",),
        ("I am unlovable", "People always leave"),
        ("If I say what I need, I will be rejected", "I have to keep everyone happy", "If they are quiet, I did something wrong"),
        ("keeping the peace at any cost", "overworking to avoid home", "checking their partner's phone"),
        (
            ("Their partner is on the phone all evening", "They do not care about me anymore", "hurt", "goes to bed early without saying anything"),
            ("A friend cancels plans", "Nobody really wants me around", "lonely", "stops suggesting meetups"),
            ("Their partner criticises how they cook", "I can never get anything right", "anger and shame", "apologises and cooks again"),
        ),
        ("silence at home", "criticism", "being left out"),
        "not saying what they need keeps the distance and confirms the belief of being unwanted",
        ("a close sister", "a child they adore", "enjoys choir"),
        (("social isolation", 0.6), ("emotional abuse in a past relationship", 0.2), ("family history of depression", 0.25)),
        0.15,
        ("Cut their arms as a teenager during their parents' divorce; has not done so since.",),
        ("has been messaging an ex", "their partner once pushed them during an argument", "is thinking of leaving and has told no one"),
        {"distress": (5, 8), "hopelessness": (3, 7), "anxiety": (4, 7), "self_efficacy": (2, 5)},
        ("people_pleaser", "self_critic", "ambivalent", "storyteller", "tester"),
    ),
    ProblemTemplate(
        "perfectionism",
        "exam stress and perfectionism; I can't start work until it is perfect",
        ("stop procrastinating", "manage the panic before exams", "feel OK with a B"),
        "Spends hours re-reading the same page; sleep goes, then the panic comes the night before deadlines.",
        ("First in the family to go to university; feels they carry everyone's hopes.", "Praised as a child only for top marks."),
        ("failed a module for the first time this year", "needs top grades this term to keep a scholarship"),
        ("worthless",),
        ("If I am not perfect I am worthless", "I am a fraud"),
        ("If I make a mistake, people will see I am not good enough", "I must be the best or it is pointless", "Asking for help shows weakness"),
        ("all-night study sessions", "rewriting notes over and over", "avoiding starting assignments"),
        (
            ("Gets a 68 on an essay", "I am not clever enough to be here", "shame", "stops going to lectures for a week"),
            ("A friend finishes an assignment early", "Everyone is better than me", "anxiety", "studies until 4am"),
            ("Sits down to start an essay", "It has to be brilliant from the first line", "dread", "cleans the flat instead"),
        ),
        ("deadlines", "comparing grades", "feedback"),
        "avoidance and overwork keep the standards unmet and the belief of being a fraud alive",
        ("a flatmate who checks in", "loves drawing", "very capable when not frozen"),
        (("poor sleep", 0.6), ("pressure from family", 0.6), ("skipping meals", 0.3)),
        0.12,
        ("Had passing thoughts of not wanting to be here after failing a module; no plan, no action.",),
        ("skipped two exams last term and has not told their parents", "has been using a friend's ADHD medication to study", "has been lying about their grades"),
        {"distress": (5, 8), "hopelessness": (2, 6), "anxiety": (6, 9), "self_efficacy": (2, 5)},
        ("intellectualiser", "self_critic", "people_pleaser", "ready"),
    ),
    ProblemTemplate(
        "post_accident",
        "trouble sleeping and irritability since a car accident",
        ("drive again", "sleep without nightmares", "stop snapping at the kids"),
        "Jumps at loud noises, replays the crash, avoids the road where it happened; short-tempered and tired.",
        ("Had been the calm one in emergencies at work before.", "A difficult childhood with a volatile stepfather."),
        ("was in a serious car accident five months ago", "was hit by a van while cycling in the autumn"),
        ("helpless",),
        ("The world is dangerous", "I am not safe"),
        ("If I let my guard down, something bad will happen", "I should be over this by now"),
        ("avoiding driving", "staying up late to avoid nightmares", "checking the locks repeatedly"),
        (
            ("A car brakes hard nearby", "It is happening again", "terror", "freezes and has to sit down"),
            ("Their child spills a drink", "I cannot handle one more thing", "irritability", "shouts, then feels awful"),
            ("Lies down to sleep", "I will see the crash again", "dread", "watches TV until 3am"),
        ),
        ("driving", "loud noises", "sirens"),
        "avoidance and hypervigilance keep the threat feeling current",
        ("a partner who drives them", "a supportive manager", "old football friends"),
        (("poor sleep", 0.8), ("chronic pain from injuries", 0.5), ("drinking to sleep", 0.3)),
        0.12,
        ("Thought about not wanting to wake up during the worst nights after the crash; no action.",),
        ("the other driver died and they blame themselves", "was on the phone at the time of the accident", "has been taking painkillers beyond the prescription"),
        {"distress": (6, 9), "hopelessness": (3, 6), "anxiety": (6, 9), "self_efficacy": (2, 5)},
        ("deflector", "disagreeable", "minimiser", "tester"),
    ),
)
