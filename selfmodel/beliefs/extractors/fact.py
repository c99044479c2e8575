"""fact: things users disclose about themselves ("i have two dogs", "my favorite band is queen"),
normalised to short first-person statements so the same fact said twice is the same value.

Precision first: only a statement that opens with a known first-person pattern counts, in the author's
own voice (no quotes, questions, hypotheticals or sarcasm: text.own_statements), cut at the first
comma or subordinate clause, and at most MAX_WORDS long once cut (longer statements are dropped, not
truncated: a clipped fact is a wrong one). Present perfect ("i have edited the post") tells what was
done, not what is, and "my question is ..." is about the thread, not the speaker.
"""

from __future__ import annotations

import re
from functools import lru_cache

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import own_statements

NAME, VERSION = "fact", "2"

MIN_WORDS, MAX_WORDS = 3, 10

# "i am a nurse and i have two dogs" holds two statements.
CLAUSE_BREAK = re.compile(r",? \b(?:and|but|so|also|plus)\b,? (?=(?:i|my) )|[,;:] (?=(?:i|my) )")
OPENER = re.compile(
    r"^(?:well|so|yes|yeah|yep|ya|yup|no|nope|oh|ohh|ah|hmm+|um+|uh|haha+|hehe|ok|okay|kk?|sure|cool|nice|wow|great"
    r"|actually|also|and|but|anyway|hi|hello|hey|dear|sir|bro|right|true|same|me too|nothing|in fact|as i said"
    r"|as i have said|as i say before|i mean|to be honest|tbh|btw|by the way|currently|now|then|just|ps"
    r"|in other words|\w+ly)\b[ ,!.]*")
# Where a statement's own content ends.
CLAUSE_END = re.compile(r"\s*(?:[,;:()\[\]]|\s-\s|\b(?:but|because|cause|though|although|so|which|who|whom|where"
                        r"|when|while|since|whereas|except|that|than|if|and (?:you|u|yours)|what about|how about|do you)\b).*$")
TRAILING_FILLER = re.compile(r"(?:\s+(?:too|also|as well|btw|though|anyway|actually|really|very much|a lot|lots"
                             r"|sir|bro|dear|mostly|now|right now|either|and you|and u|you|u|haha+|hehe))+$")
# A fact about the person talked to, or about "it"/"that" (what?), is not a fact about the speaker.
OTHER_PERSON = re.compile(r"\b(?:you|your|yours|yourself|u|ur|it|its|this|that|thats|these|those|them|him|what)\b"
                          r"|^i (?:\w+ )?(?:like|love|hate|enjoy|prefer) (?:her|one|so|too|much)$")

IRREGULAR_PARTICIPLES = (
    "been|done|made|seen|read|written|heard|found|got|gotten|given|taken|put|had|fallen|quit|lost|forgotten|broken"
    "|gone|come|become|known|won|left|sent|told|said|thought|bought|brought|taught|caught|felt|kept|met|paid|sold"
    "|spent|understood|begun|chosen|driven|eaten|hidden|ridden|shown|spoken|stolen|thrown|worn|drunk|sung|run"
    "|set|let|cut|hit|built|meant|dealt|grown|drawn|flown|held|led|shot|stood|won|make|take|give|see")
# What follows "i have" when it is not a possession: present perfect, "have to", hedges, and the
# things a Q&A thread has ("i have a question", "i have the following circuit").
NOT_POSSESSION = re.compile(
    rf"^(?:to|no|not|never|always|already|just|also|only|ever|now|still|even|yet|{IRREGULAR_PARTICIPLES}"
    r"|[\w-]+ed|[\w-]+ly|the|this|that|these|those|some|any|such|several|following|same|similar|other|another"
    r"|an? (?:question|answer|idea|doubt|problem|issue|query|suggestion|feeling|hard time|lot|bit|look|try|go|chance"
    r"|point|reason|hunch|guess|clue|comment|remark|request|thought|concern|solution|similar|different|follow"
    r"|better|good|quick|few|couple|little|small|basic|general|rough|vague|favou?rite))\b")

WORD_NUMBERS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen"
                "|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred")
PERSONAL_NOUNS = (
    "name|age|job|profession|occupation|hobby|hobbies|passion|dream|major|degree|background|expertise|field"
    "|husband|wife|boyfriend|girlfriend|partner|fiance|fiancee|son|daughter|kids|children|baby|mom|mother|mum|dad"
    "|father|parents|brother|sister|siblings|twin|family|grandma|grandmother|grandpa|grandfather|grandparents|uncle"
    "|aunt|cousin|dog|dogs|cat|cats|pet|pets|horse|bedroom|house|home|hometown|car|hair|eyes|birthday|friends"
    "|best friend|roommate|neighbor|neighbour|boss|dream \\w+")
# What a Q&A thread is made of: "i like the example", "i have a question", "my question is ...".
THREAD_TALK = re.compile(
    r"\b(?:question|answer|post|comment|example|paper|idea|approach|explanation|suggestion|point|article|proof"
    r"|analogy|edit|link|reference|thread|reply|response|problem|issue|doubt|error|code|solution|constraint"
    r"|requirement|task|assumption|difficulty|trouble|understanding|confusion|misconception)s?\b")
DANGLING = re.compile(r"\b(?:to|a|an|the|and|or|of|with|in|on|at|for|my|is|are|was|but|than|like)$")
NOT_A_DESCRIPTION = re.compile(  # "i am a bit tired", "i am a genius": not who someone is
    r"^i am an? (?:bit|little|lot|few|very|kind|sort|genius|idiot|moron|fool|dummy|noob|legend|god|bot|robot|human"
    r"|joke|liar|troll|real|fan of (?:it|that|this|them))\b")

# Every statement below opens with "i " or "my ", and what normalise_fact strips before it (openers, punctuation)
# ends at a word boundary: a clause without the word "i" or "my" holds no fact.
FIRST_PERSON = re.compile(r"\b(?:i|my)\b")

STATEMENTS = [re.compile(pattern) for pattern in (
    r"^i (?:have|own) \S.*",
    r"^i got (?:an?|\d+|" + WORD_NUMBERS + r") \w.*",  # "i got a dog", not "i got it" / "i got stuck"
    r"^my (?:favorite|favourite|fav|fave) [\w' ]+? (?:is|are) .+",
    r"^i (?:love|like|enjoy|hate|adore|prefer) (?!to (?:say|think|believe|imagine|point|mention|add|know|see|ask"
    r"|clarify|note|edit|hear|read|talk about)\b)(?!thinking\b)\S.*",
    r"^i do not (?:like|eat|drink|smoke|drive) \S.*",
    r"^i (?:live|grew up|was born|was raised) (?:in|on|near) .+",
    r"^i am from .+",
    r"^i (?:work|study|studied|teach|volunteer)(?: full ?time| part ?time)? (?:at|in|for|as|with|on (?!a |an |the )) .+",
    r"^i go to (?:school|college|university|uni|church|the gym|gym|work|high school|middle school)\b.*",
    r"^i listen to \S.*",
    r"^i (?:play|drive|speak|collect|volunteer|cook|paint|swim|ride|walk|produce|donate|sing|dance|bake|teach|knit"
    r"|hunt|fish|surf|ski|garden|travel) \S.*",
    r"^my (?:" + PERSONAL_NOUNS + r")(?:'s name)? (?:is|are|was) .+",
    r"^i am (?:a |an )?(?:vegan|vegetarian|married|single|divorced|engaged|pregnant|widowed|retired|unemployed"
    r"|male|female|left handed|left-handed)\b.*",
    r"^i am (?:\d+|" + WORD_NUMBERS + r")(?: ?years?| ?yrs?| ?year's)?(?: old)?$",
    r"^i am in (?:college|high school|middle school|school|university|(?:the )?\w+ grade|grade \w+)$",
    r"^i am married to .+",
    r"^i used to be (?:a|an) .+",
    r"^i am (?:a|an) [\w' -]+$",
)]


@lru_cache(maxsize=65536)  # the same clauses come back ("i love dogs"), and each costs a dozen patterns
def normalise_fact(clause: str) -> str | None:
    """A normalised clause (text.own_statements, split at CLAUSE_BREAK) as a short fact, or None."""
    if not FIRST_PERSON.search(clause):
        return None
    phrase = clause.strip()
    for _ in range(4):
        phrase, stripped = OPENER.subn("", phrase, count=1)
        if not stripped:
            break
    phrase = CLAUSE_END.sub("", phrase)
    phrase = re.sub(r"[^\w' -]", " ", phrase).replace(" - ", " ")
    phrase = re.sub(r"\s+", " ", phrase).strip(" -'")
    phrase = TRAILING_FILLER.sub("", phrase)
    phrase = re.sub(r"^i (am )?(?:(?:also|really|just|absolutely|totally|truly|still|only) )+(?=\w)", r"i \1", phrase)
    phrase = re.sub(r"^i have got ", "i have ", phrase)
    if OTHER_PERSON.search(phrase) or NOT_A_DESCRIPTION.match(phrase) or DANGLING.search(phrase) \
            or THREAD_TALK.search(phrase):
        return None
    if phrase.startswith("i have ") and NOT_POSSESSION.match(phrase[len("i have "):]):
        return None
    if not any(pattern.match(phrase) for pattern in STATEMENTS):
        return None
    return phrase if MIN_WORDS <= len(phrase.split()) <= MAX_WORDS else None


class FactExtractor:
    name, version = NAME, VERSION
    content_only = True  # without a target, its findings read no ids and no time (observe.observations_of_page)

    def __call__(self, event: EventView) -> list[Finding]:
        if not is_authored_message(event):
            return []
        clauses = [clause for statement in own_statements(event.text) for clause in CLAUSE_BREAK.split(statement)]
        facts = {fact for clause in clauses if (fact := normalise_fact(clause))}
        return [Finding("fact", fact, 1.0, kind="declared") for fact in sorted(facts)]
