"""The router's phrasing families: what a prompt of each label can look like (used by ``zephyra.data.router``).

``KINDS[label][kind]`` is a list of ``(family, templates)``. Within every kind the last family is used only in
``test``, the one before it only in ``validation``, the rest only in ``train``: each kind of prompt (verse
look-ups, questions about Bible people, arithmetic, Spanish sentences, ...) is trained on and tested with
phrasings the router never saw. A template's slots are filled per split:

- ``{x}`` and other pool names (``{name}``, ``{play}``, ``{country}``, ...): entities from the label's own domain
  data of the same split (``zephyra.data.router.domain_pools``);
- a slot name ending in ``2`` (``{x2}``, ``{country2}``) is a second value of the same slot, different from the first;
- ``{n}``, ``{m}`` (2-12), ``{big}`` (10-999): numbers;
- any other slot: a word from ``SLOTS``, each word assigned to one split by a stable hash (so test prompts also
  mention things no training prompt does, where a list is long enough);
- a template without slots is a fixed prompt; families named ``gibberish_*`` are generated.

The word lists are hand-written for this file; the Bible events are events the KJV narrates, and the people
and places in ``{name}`` are read from the KJV text itself.
"""

from __future__ import annotations

Families = list[tuple[str, list[str]]]

# --- domains -------------------------------------------------------------------------------------------------

COMPUTING: dict[str, Families] = {
    "term": [  # the original families: a FOLDOC / Jargon File term
        ("what_is", ["What is {x}?", "what's {x}", "What is {x} exactly?", "What is {x} in computer science?",
                     "Is {x} a piece of software?"]),
        ("explain", ["Explain {x} in computing.", "In computer terms, what does {x} mean?"]),
        ("define", ["Can you define the computing term {x}?", "Define {x} (computing)."]),
        ("slang", ["What does {x} mean in hacker slang?", "Is {x} a programming term?"]),
        ("tech_chat", ["I keep hearing about {x} in tech. What is it?", "Tell me about {x} as programmers use it."]),
        ("engineer", ["How would a software engineer describe {x}?", "Quick computer question: {x}?",
                      "{x} - what is that in IT?"]),
    ],
    "concept": [  # everyday computer concepts
        ("how_works", ["How does {concept} work?", "What does {concept} do inside a computer?"]),
        ("difference", ["What is the difference between {concept} and {concept2}?", "{concept} vs {concept2}?"]),
        ("why", ["Why do computers need {concept}?", "What is {concept} used for in a computer?",
                 "What was the first {concept}?", "Why is {concept} important in software?"]),
        ("beginner", ["Explain {concept} like I'm new to computers.", "Can you explain {concept} simply?"]),
        ("history", ["Who invented {concept}?", "When was {concept} first used in computing?",
                     "Is {concept} hardware or software?"]),
    ],
    "howto": [  # using and running computers
        ("how_do", ["How do I {pc_task}?", "What's the best way to {pc_task}?"]),
        ("help", ["My computer won't let me {pc_task}. What should I do?", "Help me {pc_task}."]),
        ("steps", ["Steps to {pc_task} on Linux?", "Can you walk me through how to {pc_task}?"]),
        ("admin", ["As a sysadmin, how would you {pc_task}?", "Is there a command to {pc_task}?",
                   "What tool should I use to {pc_task}?"]),
    ],
    "term_use": [  # the term in a sentence about computers
        ("protocol", ["Is {x} a protocol, a language or a program?", "Which computers used {x}?",
                      "What was {x} used for?"]),
        ("context", ["I read about {x} in a computer manual. What does it refer to?",
                     "What does {x} stand for in computer science?"]),
        ("origin", ["Where does the computing term {x} come from?", "Is {x} still used by computer people?"]),
        ("jargon", ["My sysadmin keeps saying {x}. Meaning?", "In a networking or software context, what is {x}?",
                    "How is {x} relevant to computer hardware or software?"]),
    ],
}

PYTHON: dict[str, Families] = {
    "api": [  # the original families: a name from the Python docs
        ("what_does", ["What does {x} do?", "What does {x} do in Python?"]),
        ("how_use", ["How do I use {x} in Python?", "Show me how {x} works."]),
        ("explain", ["Explain Python's {x}.", "What is {x} for in Python?"]),
        ("when", ["When should I use {x}?", "Is {x} part of the Python standard library?"]),
        ("script", ["I'm writing a Python script. What does {x} return?", "python {x} usage"]),
        ("code", ["In my code I call {x}. What happens?", "Describe the behaviour of {x} in Python 3.",
                  "{x} -- docs please"]),
    ],
    "task": [  # everyday programming tasks
        ("how_do", ["How do I {py_task} in Python?", "How can I {py_task} with Python?",
                    "How do I {py_task} in my script?", "Code example: {py_task}."]),
        ("write", ["Write Python code to {py_task}.", "Give me a snippet that will {py_task}.",
                   "Write a program that will {py_task}.", "Which library should I import to {py_task}?"]),
        ("best", ["What's the most pythonic way to {py_task}?", "Best way to {py_task} in python?"]),
        ("stuck", ["I'm stuck: I need to {py_task}. Which Python module helps?",
                   "Python newbie here - how to {py_task}?"]),
        ("function", ["Write a function to {py_task}.", "Is there a built-in to {py_task}?",
                      "One-liner to {py_task}?"]),
    ],
    "error": [  # exceptions and error messages
        ("why", ["Why do I get {error}?", "What causes {error} in Python?"]),
        ("fix", ["How do I fix {error}?", "My program crashed with {error}."]),
        ("traceback", ["Traceback says {error}. Help?", "What does {error} mean in a traceback?"]),
        ("catch", ["How do I catch {error}?", "Should I handle {error} with try/except?",
                   "When does Python raise {error}?"]),
    ],
    "concept": [  # the language itself
        ("what_is", ["What is {py_concept} in Python?", "Explain {py_concept} in Python.",
                     "What are {py_concept} and when do I use them?"]),
        ("how", ["How do {py_concept} work in Python?", "Can you show an example of {py_concept}?"]),
        ("compare", ["When should I use {py_concept} instead of {py_concept2}?",
                     "Python: {py_concept} or {py_concept2}?"]),
        ("learn", ["I'm learning Python. What are {py_concept}?", "Are {py_concept} slow in Python?",
                   "Give me a quick tutorial on {py_concept}."]),
    ],
}

SHAKESPEARE: dict[str, Families] = {
    "character": [  # the original families: a character
        ("who", ["Who is {x}?", "Who is {x} in Shakespeare?"]),
        ("character", ["Tell me about the character {x}.", "What role does {x} play?"]),
        ("which_play", ["In which play does {x} appear?", "Which Shakespeare play has {x} in it?"]),
        ("quote", ["What does {x} say in the play?", "Quote something {x} says."]),
        ("describe", ["Describe {x} from the Shakespeare plays.", "Is {x} a hero or a villain?"]),
        ("reader", ["I'm reading Shakespeare and met {x}. Who's that?", "Give me a character sketch of {x}.",
                    "What happens to {x} at the end?"]),
    ],
    "play": [  # a play as a whole
        ("plot", ["What is {play} about?", "Summarise the plot of {play}."]),
        ("ending", ["How does {play} end?", "Who dies in {play}?"]),
        ("theme", ["What are the main themes of {play}?", "Is {play} a comedy or a tragedy?"]),
        ("cast", ["Who are the main characters in {play}?", "Who is the hero of {play}?"]),
        ("study", ["I have an essay on {play}. Where should I start?", "When did Shakespeare write {play}?",
                   "What happens in the first act of {play}?"]),
    ],
    "story": [  # a character's story
        ("fate", ["What happens to {x} in {play}?", "Does {x} die in {play}?"]),
        ("relation", ["Who does {x} love?", "Who are {x}'s enemies?"]),
        ("motive", ["Why does {x} act the way they do?", "What does {x} want?"]),
        ("scene", ["What is {x}'s most famous speech?", "In what scene does {x} first appear?",
                   "Is {x} loyal to the king?"]),
    ],
    "line": [  # a line from the plays
        ("line_who", ["Who said \"{line}\"?", "Which character says \"{line}\"?",
                      "Complete the line: \"{line}\"", "Is \"{line}\" from a Shakespeare play?"]),
        ("line_play", ["Which play is the line \"{line}\" from?", "Where does \"{line}\" come from?"]),
        ("line_meaning", ["What does \"{line}\" mean?", "Explain the line \"{line}\"."]),
        ("line_quote", ["\"{line}\" - who says that?", "In what scene is \"{line}\" spoken?",
                   "Whose words are these: \"{line}\"?"]),
    ],
    "bard": [  # the playwright, his theatre and his language
        ("life", ["{bard_topic}?", "Tell me about {bard_topic}."]),
        ("language", ["What does '{archaic}' mean in Shakespeare?", "How would Shakespeare say '{archaic}'?"]),
        ("theatre", ["Explain {bard_topic} to a student.", "Why does {bard_topic} matter to readers of the plays?"]),
        ("verse", ["What does the word '{archaic}' mean in Elizabethan plays?", "Is '{archaic}' used by Shakespeare?",
                   "Give me the modern meaning of '{archaic}' as Shakespeare uses it."]),
    ],
}

SCRIPTURE: dict[str, Families] = {
    "verse": [  # the original families: a verse reference
        ("what_says", ["What does {x} say?", "Quote {x}."]),
        ("read", ["Read me {x} from the King James Bible.", "What is written in {x}?"]),
        ("meaning", ["Explain the verse {x}.", "What is the meaning of {x}?"]),
        ("recite", ["Recite {x} (KJV).", "How does {x} go in the King James Version?"]),
        ("words", ["Which words are in {x}?", "I need the text of {x}."]),
        ("lookup", ["Look up {x} for me.", "Scripture reading: {x}?", "What's the verse at {x}?"]),
    ],
    "person": [  # people and places the KJV names
        ("who", ["Who was {name}?", "Who was {name} in the Bible?", "What is {name} remembered for in the Bible?",
                 "Tell me what scripture says about {name}."]),
        ("family", ["Who was the father of {name}?", "Who were the sons of {name}?", "Who was {name}'s wife?",
                    "What happened to {name}'s family?"]),
        ("life", ["Tell me the story of {name}.", "What did {name} do?"]),
        ("known", ["What is {name} known for?", "What happened to {name}?"]),
        ("appears", ["Where does {name} appear in the Old Testament?", "Which book of the Bible tells of {name}?",
                   "Was {name} a prophet, a king or a place?"]),
    ],
    "event": [  # what the Bible narrates
        ("who_did", ["Who {deed}?", "In the Bible, who {deed}?"]),
        ("story", ["Tell me about {story}.", "What happened at {story}?", "How long did {story} last?",
                   "How many people were there at {story}?"]),
        ("why", ["Why did God send {story}?", "What is the lesson of {story}?"]),
        ("where", ["Where in scripture do we read about {story}?", "Which book describes {story}?"]),
        ("quiz", ["Bible quiz: who {deed}?", "Sunday school question - who {deed}?", "Explain {story} to a child."]),
    ],
    "saying": [  # words of a verse
        ("saying_who", ["Who said \"{phrase}\"?", "Which prophet wrote \"{phrase}\"?",
                        "Is \"{phrase}\" a Bible verse?", "Complete the verse: \"{phrase}\""]),
        ("saying_book", ["Which book of the Bible says \"{phrase}\"?", "Where does \"{phrase}\" come from?"]),
        ("saying_meaning", ["What does \"{phrase}\" mean?", "Explain the words \"{phrase}\"."]),
        ("saying_quote", ["\"{phrase}\" - where is that written?", "Is \"{phrase}\" from the Old Testament?",
                   "Whose words are these: \"{phrase}\"?"]),
    ],
    "book": [  # the books and the faith
        ("about", ["What is the book of {book} about?", "Who wrote {book}?"]),
        ("count", ["How many chapters are in {book}?", "Is {book} in the Old or the New Testament?",
                   "What happens in the book of {book}?", "Is the book of {book} worth reading?"]),
        ("faith", ["What does the Bible teach about {faith_topic}?", "What does scripture say about {faith_topic}?"]),
        ("study", ["Explain {faith_topic} from the Bible.", "Is {faith_topic} in the Gospels?"]),
        ("reading", ["Where should I start reading {book}?", "Summarise the book of {book}.",
                     "What do Christians learn about {faith_topic} from the scriptures?"]),
    ],
}

CHEMISTRY: dict[str, Families] = {
    "term": [  # the original families: an element or chemistry term
        ("what_is", ["What is {x}?", "What is {x} in chemistry?"]),
        ("facts", ["What is the chemical symbol of {x}?", "Tell me the atomic number of {x}."]),
        ("properties", ["Describe the properties of {x}.", "Is {x} a metal?"]),
        ("reactions", ["How does {x} react?", "What compounds does {x} form?"]),
        ("class", ["In chemistry class we covered {x}. What is it?", "Explain {x} to a chemistry student."]),
        ("chemically", ["Chemically speaking, what's {x}?", "Give me the chemistry facts about {x}.",
                        "{x}: element or compound?"]),
    ],
    "element": [  # an element's properties
        ("physical", ["What is the melting point of {element}?", "Is {element} a solid at room temperature?",
                      "Why is {element} useful in industry?", "Where is {element} found in nature?"]),
        ("atoms", ["How many protons are in an atom of {element}?",
                   "What is the electron configuration of {element}?"]),
        ("table", ["Where is {element} on the periodic table?", "Which group is {element} in?"]),
        ("safety", ["Is {element} radioactive?", "Is {element} toxic?"]),
        ("uses", ["What is {element} used for?", "Who discovered {element}?",
                  "Is {element} reactive?"]),
    ],
    "reaction": [  # reactions and compounds
        ("mix", ["What happens when {compound} reacts with {compound2}?",
                 "What do you get from {compound} and {compound2}?"]),
        ("formula", ["What is the chemical formula of {compound}?", "What is {compound} made of?"]),
        ("lab", ["Is it safe to mix {compound} and {compound2}?", "Balance the equation for {compound} burning."]),
        ("process", ["Explain {chem_process}.", "What is {chem_process} in chemistry?"]),
        ("exam", ["Chemistry exam question: describe {chem_process}.", "Why does {chem_process} happen?",
                  "Give an example of {chem_process} with {compound}."]),
    ],
    "formula": [  # formulas, bonds and solutions
        ("name", ["What is {formula}?", "What compound is {formula}?"]),
        ("mass", ["What is the molar mass of {formula}?", "How many atoms are in {formula}?"]),
        ("bond", ["What kind of bond holds {formula} together?", "Is {formula} ionic or covalent?"]),
        ("solution", ["Is {formula} an acid or a base?", "Does {formula} dissolve in water?"]),
        ("study", ["Draw the structure of {formula}.", "What does the formula {formula} tell us?",
                   "Name the compound with formula {formula}."]),
    ],
}

GEOGRAPHY: dict[str, Families] = {
    "place": [  # the original families: a place
        ("where", ["Where is {x}?", "What is {x}?", "Where can I find {x}?", "Which part of the world is {x} in?"]),
        ("capital", ["What is the capital of {x}?", "Which country is {x} in?"]),
        ("describe", ["Tell me about the geography of {x}.", "Describe {x} on a map."]),
        ("facts", ["How far is {x} from the sea?", "What is the population of {x}?"]),
        ("travel", ["I'm travelling to {x}. Where exactly is it?", "Locate {x} for me."]),
        ("globe", ["On which continent is {x}?", "Is {x} a city or a country?", "Point me to {x} on the globe."]),
    ],
    "country": [  # a country
        ("borders", ["Which countries border {country}?", "Does {country} have a coastline?"]),
        ("language", ["What language is spoken in {country}?", "What currency does {country} use?"]),
        ("size", ["How big is {country}?", "How many people live in {country}?"]),
        ("land", ["Is {country} mountainous?", "What is the climate of {country}?"]),
        ("compare", ["Is {country} bigger than {country2}?", "How far is {country} from {country2}?",
                     "Which is further north, {country} or {country2}?"]),
    ],
    "city": [  # a city
        ("located", ["Which country is the city of {city} in?", "Where is {city} located?"]),
        ("river", ["Which river runs through {city}?", "Is {city} on the coast?"]),
        ("capital_city", ["Is {city} a capital city?", "What region is {city} in?"]),
        ("city_size", ["How large is {city}?", "What is {city} near?"]),
        ("city_map", ["How do I find {city} on a map?", "What is the nearest big city to {city}?",
                 "Is {city} north or south of the equator?"]),
    ],
    "feature": [  # rivers, mountains, seas, deserts
        ("feature_where", ["Where is the {landform}?", "Which countries does the {landform} cross?"]),
        ("length", ["How long is the {landform}?", "How big is the {landform}?"]),
        ("world", ["What is the {superlative} in the world?", "Which is the {superlative} in {continent}?"]),
        ("continent", ["How many countries are in {continent}?", "What is the largest country in {continent}?"]),
        ("feature_map", ["Name a famous landmark in {continent}.", "What borders the {landform}?",
                 "Which continent is the {landform} on?"]),
    ],
}

# --- base: everything no adapter knows -----------------------------------------------------------------------

BASE: dict[str, Families] = {
    "word": [  # the original families: a general English word
        ("word", ["What does {x} mean?", "Define {x}.", "What is the meaning of the word {x}?", "What is a {x}?"]),
        ("synonym", ["Give me a synonym for {x}.", "What's another word for {x}?",
                     "Write a sentence with the word {x}."]),
        ("spell", ["How do you spell {x}?", "Use {x} in a sentence."]),
        ("rhyme", ["What rhymes with {x}?", "Is {x} a noun or a verb?"]),
    ],
    "offtopic": [("offtopic_a", [
        "What's the weather like today?", "Tell me a joke.", "How do I bake bread?",
        "Write a short poem about the sea.", "What should I cook for dinner tonight?",
        "Recommend a good film for the weekend.", "How can I sleep better?", "What's a good name for a cat?",
        "How do I tie a tie?", "Give me a fun fact.", "What is the best way to learn to swim?",
        "How long should I boil an egg?"]),
        ("offtopic_b", [
            "Can you suggest a birthday present for my mum?", "How do I get rid of hiccups?",
            "Write a limerick about a frog.", "What time do shops usually open on Sunday?",
            "Any tips for a job interview?", "How do I make my plants grow faster?",
            "Which is better, tea or coffee?", "How do I start running?"]),
        ("offtopic_c", [
            "Help me plan a picnic.", "What's a nice way to say sorry to a friend?",
            "How many hours of sleep does a teenager need?", "Tell me something that will cheer me up.",
            "What games can we play at a party?", "How do I fold a paper plane?",
            "What do you think about rainy days?", "Suggest a hobby I could try."]),
    ],
    "greeting": [
        ("greeting_a", ["hi", "hello", "hey there", "good morning", "how are you?", "thanks!"]),
        ("greeting_b", ["hiya", "good evening", "what's up?", "cheers", "bye for now"]),
        ("greeting_c", ["howdy", "greetings!", "yo, how's it going?", "see you", "nice to meet you"]),
    ],
    "gibberish": [("gibberish_letters", []), ("gibberish_keys", []), ("gibberish_syllables", [])],
    "category": [  # phase 1's skill: what kind of thing a word names
        ("bare", ["{thing}:", "{thing}", "{thing}?"]),
        ("kind", ["What kind of thing is a {thing}?", "Is a {thing} an animal, a plant or an object?"]),
        ("either", ["Is a {thing} a {category} or a {category2}?", "Would you call a {thing} a {category}?"]),
        ("belongs", ["Which category does {thing} belong to?", "Name something that is a {category}.",
                     "Give me three examples of a {category}."]),
        ("sort", ["Sort this into a group: {thing}.", "A {thing} is a type of what?", "Classify: {thing}"]),
    ],
    "arithmetic": [
        ("times", ["What is {n} times {m}?", "what's {n} x {m}", "Multiply {n} by {m}."]),
        ("plus", ["What is {big} plus {n}?", "{big} + {m} = ?", "Add {n} and {big}."]),
        ("minus", ["What is {big} minus {n}?", "Subtract {m} from {big}.", "{big} - {n}?"]),
        ("divide", ["What is {big} divided by {n}?", "How many times does {n} go into {big}?"]),
        ("word_problem", ["If I have {big} apples and eat {n}, how many are left?", "Is {big} an even number?",
                          "What is half of {big}?", "What's {n} squared?",
                          "Round {big}.{n} to the nearest whole number."]),
    ],
    "smalltalk": [  # about the assistant, and about me
        ("about_you", ["What's your favourite {fav}?", "Do you like {activity}?"]),
        ("feelings", ["I feel {mood} today.", "I'm so {mood} right now."]),
        ("personal", ["Do you have {personal_thing}?", "Where do you live?", "How old are you?", "Are you married?",
                      "What did you do today?", "Can we be friends?"]),
        ("me", ["I just got back from {activity}.", "My friend says I spend too much time {activity}.",
                "Guess what I did this weekend: {activity}!"]),
        ("chat", ["Tell me about your favourite {fav}.", "Do you ever feel {mood}?", "What makes you {mood}?",
                  "I love {activity}, do you?"]),
    ],
    "creative": [  # jokes, stories, poems
        ("joke", ["Tell me a joke about {topic}.", "Do you know any jokes about {topic}?", "Make me laugh."]),
        ("poem", ["Write a poem about {topic}.", "Compose a short rhyme about {topic}."]),
        ("story", ["Tell me a bedtime story about {animal}.", "Make up a story about {topic}."]),
        ("riddle", ["Give me a riddle about {topic}.", "Can you write a haiku about {topic}?", "Tell me a pun."]),
        ("fun", ["Say something funny about {topic}.", "Write a song about {topic}.", "Invent a silly word.",
                 "Got a funny story about {animal}?"]),
    ],
    "sport": [
        ("rules", ["What are the rules of {sport}?", "How do you score in {sport}?"]),
        ("players", ["How many players are on a {sport} team?", "Who is the best {sport} player ever?"]),
        ("learn", ["How do I get better at {sport}?", "Is {sport} hard to learn?"]),
        ("watch", ["When is the next {sport} world championship?", "Why is {sport} so popular?"]),
        ("fan", ["Who won the last {sport} final?", "What equipment do I need for {sport}?",
                 "Is {sport} an Olympic sport?"]),
    ],
    "weather": [
        ("today", ["Is it going to be {weather} today?", "Will it be {weather} tomorrow?"]),
        ("wear", ["What should I wear when it's {weather}?", "Do I need a coat if it's {weather}?"]),
        ("season", ["When does {season} start?", "Why is {season} so {weather}?"]),
        ("plan", ["Is {weather} weather good for a walk?", "What can I do indoors when it's {weather}?"]),
        ("forecast", ["Check the forecast for the weekend please.", "How {weather} will it be this {season}?",
                      "Should I cancel the barbecue if it's {weather}?"]),
    ],
    "cooking": [
        ("recipe", ["How do I make {dish}?", "Give me a recipe for {dish}."]),
        ("time", ["How long should I cook {food}?", "At what temperature do I bake {dish}?"]),
        ("ingredients", ["What can I cook with {food} and {food2}?", "What goes well with {food}?"]),
        ("diet", ["Is {food} healthy?", "Can I freeze {dish}?"]),
        ("kitchen", ["What's a quick dinner with {food}?", "How do I store {food}?",
                     "Can you suggest a vegetarian {dish}?"]),
    ],
    "advice": [
        ("how_can", ["How can I {goal}?", "Any tips to {goal}?"]),
        ("should", ["Should I {choice} or {choice2}?", "Is it a good idea to {choice}?"]),
        ("help", ["I want to {goal}. Where do I start?", "What's the first step to {goal}?"]),
        ("event", ["How do I prepare for {life_event}?", "I'm nervous about {life_event}. Any advice?"]),
        ("friend", ["My friend wants to {goal}. What should I tell them?", "Is it too late to {goal}?",
                    "What should I bring to {life_event}?"]),
    ],
    "health": [
        ("symptom", ["What are the symptoms of {ailment}?", "How do I know if I have {ailment}?"]),
        ("remedy", ["How do I get rid of {ailment}?", "What helps with {ailment}?"]),
        ("habit", ["Is {habit} good for you?", "How much {habit} is too much?"]),
        ("doctor", ["When should I see a doctor about {ailment}?", "Can {ailment} go away on its own?"]),
        ("body", ["How can I avoid {ailment}?", "Does {habit} help you live longer?",
                  "How many minutes of {habit} a day is healthy?"]),
    ],
    "knowledge": [  # general knowledge no adapter covers: animals, people, things
        ("animal", ["How long do {animal}s live?", "What do {animal}s eat?"]),
        ("famous", ["Who was {famous}?", "What is {famous} famous for?"]),
        ("invent", ["Who invented the {invention}?", "When was the {invention} invented?",
                    "Explain how a {invention} works.", "What was life like before the {invention}?"]),
        ("nature", ["Why do {animal}s {animal_act}?", "How fast can a {animal} move?"]),
        ("trivia", ["Tell me a fact about {animal}s.", "How did {famous} become famous?",
                    "How does a {invention} work?"]),
    ],
    "opinion": [
        ("which", ["Which is better, {opinion_a} or {opinion_b}?", "{opinion_a} or {opinion_b}?"]),
        ("think", ["What do you think about {opinion_a}?", "Is {opinion_a} overrated?"]),
        ("believe", ["Do you believe in {belief}?", "Are {belief} real?"]),
        ("favour", ["Why do people like {opinion_a}?", "What's your honest opinion of {opinion_a}?"]),
        ("debate", ["Convince me that {opinion_a} is better than {opinion_b}.", "Is it weird to believe in {belief}?",
                    "Would you rather have {opinion_a} or {opinion_b}?"]),
    ],
    "errand": [  # everyday tasks and requests
        ("remind", ["Remind me to {chore} tomorrow.", "Set a timer for {n} minutes."]),
        ("shop", ["Where can I buy {item}?", "How much does {item} cost?"]),
        ("fix", ["How do I clean {item}?", "My {household} is broken. What should I do?"]),
        ("todo", ["Make me a to-do list for {chore}.", "How often should I {chore}?"]),
        ("home", ["What is the easiest way to {chore}?", "How do I repair a {household}?",
                  "Can you help me choose {item}?"]),
    ],
    "foreign_es": [  # Spanish
        ("es_a", ["¿Cómo estás hoy?", "Me gusta mucho {es_thing}.", "¿Dónde está {es_place}?",
                  "Quiero comprar {es_thing}.", "Hace mucho calor hoy."]),
        ("es_b", ["¿Puedes ayudarme con {es_thing}?", "Voy a {es_place} mañana.", "¿Qué hora es?",
                  "Necesito {es_thing}, por favor."]),
        ("es_c", ["¿Tienes {es_thing}?", "Mi hermana vive cerca de {es_place}.", "Buenas noches a todos.",
                  "No entiendo la pregunta.", "¿Cuánto cuesta {es_thing}?"]),
    ],
    "foreign_fr": [  # French
        ("fr_a", ["Bonjour, comment ça va ?", "J'aime beaucoup {fr_thing}.", "Où est {fr_place} ?",
                  "Je voudrais {fr_thing}, s'il vous plaît."]),
        ("fr_b", ["Il fait beau aujourd'hui.", "Tu peux m'aider avec {fr_thing} ?", "Je vais à {fr_place} demain.",
                  "Quelle heure est-il ?"]),
        ("fr_c", ["As-tu {fr_thing} ?", "Mon frère habite près de {fr_place}.", "Merci beaucoup, à bientôt.",
                  "Combien coûte {fr_thing} ?"]),
    ],
    "foreign_de": [  # German
        ("de_a", ["Guten Morgen, wie geht es dir?", "Ich mag {de_thing} sehr.", "Wo ist {de_place}?",
                  "Ich möchte {de_thing} kaufen."]),
        ("de_b", ["Das Wetter ist heute schön.", "Kannst du mir mit {de_thing} helfen?",
                  "Ich fahre morgen zu {de_place}.", "Wie viel Uhr ist es?"]),
        ("de_c", ["Hast du {de_thing}?", "Meine Mutter wohnt neben {de_place}.", "Vielen Dank und bis bald.",
                  "Was kostet {de_thing}?"]),
    ],
}

KINDS: dict[str, dict[str, Families]] = {"computing": COMPUTING, "python": PYTHON, "shakespeare": SHAKESPEARE,
                                         "scripture": SCRIPTURE, "chemistry": CHEMISTRY, "geography": GEOGRAPHY,
                                         "base": BASE}


def _words(text: str) -> list[str]:
    return [" ".join(w.split()) for w in text.split(";") if w.strip()]


# Slot word lists (";"-separated: entries may hold spaces). Domain lists supplement the domain data where it has
# no such entities (everyday computing concepts, Python tasks, Bible events, compounds, landforms).
SLOTS: dict[str, list[str]] = {k: _words(v) for k, v in {
    # computing
    "concept": """RAM; a CPU; a hard disk; an operating system; a compiler; an interpreter; a file system; virtual
        memory; a cache; a GPU; DNS; TCP/IP; a firewall; an IP address; a router; a database; SQL; an API; a web
        server; HTTP; encryption; a hash function; a kernel; a device driver; the BIOS; a motherboard; a
        network switch; Ethernet; Wi-Fi; Bluetooth; a virtual machine; a container; cloud computing; binary
        numbers; floating point; a bit; a byte; Unicode; ASCII; an assembler; machine code; a linker; a
        debugger; a text editor; version control; Git; a terminal; the command line; a shell script; a
        pointer; recursion; a linked list; a hash table; a binary tree; a sorting algorithm; multithreading;
        a process; a deadlock; garbage collection; an SSD; USB; a keyboard driver; public key cryptography;
        a VPN; email protocols; a mainframe; a supercomputer; parallel computing; a transistor; logic gates;
        object-oriented programming; a programming language; open-source software; malware; a computer
        virus; a spreadsheet; a URL; a domain name; a modem; bandwidth; latency; packet switching""",
    "pc_task": """free up disk space; check how much RAM I have; change my IP address; find a file by name;
        kill a frozen process; set up SSH keys; format a USB stick; back up my hard drive; install Linux;
        update my drivers; compress a folder; see which ports are open; flush the DNS cache; mount a network
        drive; schedule a job with cron; check my CPU temperature; reset a forgotten password on Linux; make a
        bootable USB; create a symbolic link; change file permissions; set an environment variable; find out
        my kernel version; speed up a slow laptop; partition a disk; configure a firewall; monitor network
        traffic; encrypt a hard drive; recover deleted files; set up a web server; connect to a remote
        machine; measure my internet speed; clone a disk; remove a virus; list running processes; resize a
        partition; set a static IP; open a port on my router; convert a file's line endings""",
    # python
    "py_task": """reverse a list; sort a dictionary by value; read a file line by line; write JSON to a file;
        parse a date string; remove duplicates from a list; merge two dictionaries; count words in a string;
        check if a key is in a dict; flatten a nested list; download a web page; run a shell command; split a
        string on commas; convert a string to an integer; format a float with two decimals; get the current
        time; make a virtual environment; iterate over a dictionary; find the index of an item; read a CSV
        file; copy a file; list files in a directory; generate random numbers; handle command-line arguments;
        measure how long a function takes; create a class; sort a list of tuples; join a list of strings;
        check the type of a variable; send an HTTP request; read environment variables; zip two lists
        together; make a list of squares; open an image; write unit tests; log messages to a file; use a
        regular expression; pickle an object; read user input; convert a list to a set; check if a file
        exists; get the length of a list; capitalise every word; swap two variables; call a function from
        another module; install numpy; write a decorator; use async and await""",
    "py_concept": """list comprehensions; generators; decorators; context managers; lambdas; f-strings;
        dictionaries; tuples; sets; classes; dataclasses; type hints; virtual environments; modules;
        packages; exceptions; iterators; keyword arguments; *args and **kwargs; slicing; the GIL; coroutines;
        metaclasses; properties; static methods; class methods; closures; global variables; mutable default
        arguments; imports; docstrings; the __init__ method; inheritance; duck typing; namedtuples; enums""",
    # shakespeare
    "bard_topic": """Shakespeare's early life in Stratford; the Globe Theatre; the First Folio; Shakespeare's
        sonnets; the Lord Chamberlain's Men; iambic pentameter in the plays; Shakespeare's history plays;
        the problem plays; the late romances; the soliloquies; Shakespeare's fools; Anne Hathaway's marriage
        to Shakespeare; the authorship question; Elizabethan stage conventions; boy actors playing women;
        Shakespeare's comedies; Shakespeare's tragedies; the play within the play; blank verse in Shakespeare;
        Shakespeare's death in 1616; the quartos of the plays; the King's Men""",
    "archaic": """wherefore; thou art; prithee; forsooth; anon; methinks; fie; hark; thee; thine; hither;
        whither; sirrah; mayhap; ere; oft; 'tis; alack; zounds; marry; wilt thou; dost; knave; fain;
        beshrew; gramercy; perchance; wherein; hie thee; yonder""",
    # scripture
    "deed": """built the ark; killed Goliath; parted the waters of the Red Sea; was sold into Egypt by his
        brothers; wrestled with an angel; was thrown into the fiery furnace; interpreted Pharaoh's dreams;
        led the Israelites into the promised land; was the strongest man in the Bible; betrayed Jesus; denied
        Jesus three times; baptised Jesus; wrote most of the Psalms; was the wisest king of Israel; was taken
        up to heaven in a chariot of fire; was the first murderer; ate the forbidden fruit; was turned into a
        pillar of salt; was raised from the dead by Jesus; saw a burning bush; brought down the walls of
        Jericho; was tempted in the wilderness for forty days; was converted on the road to Damascus; wrote
        the book of Revelation; was the mother of Jesus; was the first king of Israel; anointed David; was
        the father of the twelve tribes; was the oldest man in the Bible; cut Samson's hair; was the queen
        who saved her people from Haman; refused to bow to the golden image; was sent to preach to Nineveh;
        sold his birthright for a bowl of pottage; climbed a sycamore tree to see Jesus; was the doubting
        apostle; was stoned to death for his faith; had a coat of many colours; made the golden calf;
        received the tablets of the law on Mount Sinai; was the mother of John the Baptist; led the
        Israelites after Moses died; was the prophet who confronted Ahab; fed the prophet Elijah by the
        brook; asked for the head of John the Baptist; washed his hands at the trial of Jesus""",
    "story": """the great flood; the tower of Babel; the burning bush; the exodus from Egypt; the ten plagues;
        the fall of Jericho; the Last Supper; the crucifixion; the resurrection of Jesus; the feeding of the
        five thousand; the Sermon on the Mount; the day of Pentecost; the garden of Eden; the golden calf;
        the Passover; the manna in the wilderness; the sacrifice of Isaac; the parable of the prodigal son;
        the good Samaritan; the Babylonian captivity; the judgement of Solomon; the writing on the wall;
        Jacob's ladder; the wedding at Cana; the raising of Lazarus; the stoning of Stephen; the ark of the
        covenant; the destruction of Sodom and Gomorrah; David and Bathsheba; Daniel in the den of lions;
        the walls of Jerusalem rebuilt by Nehemiah; the calling of the twelve disciples; the transfiguration;
        the healing of the blind man; the widow's mite; the parable of the sower; the creation in six days;
        the covenant of the rainbow; the crossing of the Jordan; Elijah on Mount Carmel; the birth of Jesus
        in Bethlehem; the flight into Egypt; the visit of the wise men; the ascension""",
    "faith_topic": """forgiveness; prayer; charity; the Sabbath; sin; salvation; grace; faith and works; the
        kingdom of heaven; eternal life; repentance; fasting; tithing; the Holy Spirit; baptism; marriage;
        loving your neighbour; the second coming; angels; the devil; heaven and hell; the commandments; the
        covenant with Abraham; humility; mercy; idolatry; the Messiah; the parables; miracles; prophecy""",
    # chemistry
    "compound": """water; table salt; sodium chloride; carbon dioxide; hydrochloric acid; sulfuric acid;
        ammonia; methane; ethanol; glucose; baking soda; vinegar; hydrogen peroxide; calcium carbonate;
        sodium hydroxide; nitric acid; ozone; carbon monoxide; rust; limestone; quicklime; bleach; acetone;
        benzene; propane; potassium permanganate; copper sulfate; silver nitrate; magnesium oxide; iron
        oxide; sulfur dioxide; nitrogen dioxide; acetic acid; citric acid; sucrose; urea; phosphoric acid;
        lithium hydroxide; zinc oxide; aluminium oxide; chlorine gas; hydrogen gas; oxygen gas; nitrous
        oxide; potassium nitrate; calcium hydroxide; barium sulfate; sodium bicarbonate""",
    "chem_process": """oxidation; reduction; electrolysis; combustion; distillation; titration; fermentation;
        neutralisation; a redox reaction; catalysis; polymerisation; hydrolysis; sublimation; precipitation;
        ionic bonding; covalent bonding; a displacement reaction; an exothermic reaction; an endothermic
        reaction; chromatography; crystallisation; corrosion; electroplating; the Haber process; cracking
        of hydrocarbons; esterification; radioactive decay; nuclear fission; isotopes; the mole concept;
        Avogadro's number; pH; buffer solutions; activation energy; chemical equilibrium; Le Chatelier's
        principle; the ideal gas law; electronegativity; valence electrons; the periodic law""",
    "formula": """H2O; NaCl; CO2; H2SO4; HCl; NH3; CH4; C2H5OH; C6H12O6; NaHCO3; H2O2; CaCO3; NaOH;
        HNO3; O3; CO; Fe2O3; KMnO4; CuSO4; AgNO3; MgO; SO2; NO2; CH3COOH; C12H22O11; H3PO4; LiOH; ZnO;
        Al2O3; Cl2; KNO3; Ca(OH)2; BaSO4; C3H8; C6H6; N2O; KCl; CaCl2; Na2CO3; NaOCl""",
    # geography
    "landform": """Nile; Amazon; Danube; Rhine; Mississippi; Yangtze; Ganges; Volga; Thames; Mekong; Congo
        River; Zambezi; Sahara; Gobi desert; Atacama desert; Kalahari; Alps; Andes; Himalayas; Rocky
        Mountains; Pyrenees; Urals; Carpathians; Mount Everest; Kilimanjaro; Mont Blanc; Lake Victoria; Lake
        Baikal; Caspian Sea; Dead Sea; Mediterranean Sea; Baltic Sea; Black Sea; Red Sea; Pacific Ocean;
        Atlantic Ocean; Indian Ocean; Arctic Ocean; Great Barrier Reef; Strait of Gibraltar; Panama Canal;
        Suez Canal; Bay of Bengal; Gulf of Mexico; Amazon rainforest; Great Rift Valley; Grand Canyon;
        Niagara Falls; Victoria Falls; Iberian Peninsula; Scandinavian Peninsula; Balkan Peninsula""",
    "continent": "Africa; Asia; Europe; North America; South America; Oceania; Antarctica; Australia",
    "superlative": """longest river; highest mountain; largest desert; deepest lake; largest ocean; biggest
        island; smallest country; largest country; most populous city; highest waterfall; driest place;
        longest mountain range; largest lake""",
    # base
    "thing": """watermelon; sparrow; oak; hammer; trout; tulip; carrot; violin; sofa; spoon; bicycle;
        eagle; banana; potato; cucumber; pine; rose; lion; salmon; cabbage; trumpet; wardrobe; kettle;
        lorry; apple; dove; maple; chisel; cod; daisy; onion; flute; chair; fork; canoe; owl; cherry; leek;
        birch; wrench; shark; lily; pumpkin; drum; table; plate; tractor; robin; grape; pea; willow; saw;
        tuna; orchid; lettuce; guitar; bed; cup; scooter; parrot; mango; turnip; cedar; drill; eel; poppy;
        beetroot; piano; lamp; bowl; van; penguin; peach; celery; elm; axe; herring; sunflower; garlic;
        harp; desk; jug; train; crow; lemon; spinach; ash tree; pliers; whale; dandelion; squash; cello;
        shelf; mug; ferry; pigeon; plum; radish; palm tree; shovel; octopus; marigold; aubergine; banjo;
        cupboard; teapot; helicopter; goose; pear; broccoli; hedgehog; frog; beetle; wolf; rabbit; cow""",
    "category": """fruit; vegetable; bird; fish; tree; flower; tool; musical instrument; piece of furniture;
        vehicle; mammal; insect; kitchen utensil; reptile; plant; toy; drink; piece of clothing""",
    "fav": """colour; food; film; song; season; animal; book; number; sport; holiday; flower; game; city to
        visit; dessert; time of day""",
    "activity": """hiking; painting; gardening; dancing; swimming; reading novels; cooking; camping;
        knitting; cycling; playing the piano; watching films; fishing; skiing; shopping; singing; yoga;
        baking cakes; playing video games; bird watching; running marathons; taking photos; surfing""",
    "mood": """happy; sad; tired; bored; excited; lonely; stressed; nervous; grumpy; relaxed; hungry; sleepy;
        worried; cheerful; anxious; proud; confused; homesick""",
    "personal_thing": """a family; any pets; a favourite holiday; feelings; a birthday; dreams; hobbies;
        friends; a body; a sense of humour""",
    "topic": """cats; dogs; the moon; autumn; coffee; my boss; Mondays; pizza; the ocean; friendship; rain;
        a lazy cat; teachers; the weekend; elephants; summer holidays; a broken umbrella; traffic jams;
        gardening; cheese; a grumpy neighbour; birthdays; socks; penguins; the first day of school""",
    "animal": """cat; dog; elephant; giraffe; penguin; dolphin; tortoise; rabbit; horse; owl; bee; ant;
        kangaroo; koala; panda; tiger; zebra; hamster; parrot; goldfish; octopus; bat; camel; squirrel;
        cheetah; hedgehog; goat; duck; butterfly; spider""",
    "animal_act": "sleep so much; migrate; hibernate; sing; purr; howl; change colour; live in groups; build nests",
    "sport": """football; tennis; basketball; cricket; rugby; golf; baseball; ice hockey; volleyball;
        badminton; table tennis; cycling; swimming; boxing; netball; handball; darts; snooker; skiing;
        surfing; athletics; water polo; lacrosse; squash""",
    "weather": "rainy; sunny; windy; cold; hot; snowy; foggy; stormy; humid; freezing; cloudy; warm",
    "season": "spring; summer; autumn; winter; the rainy season",
    "dish": """pancakes; lasagne; a chocolate cake; banana bread; spaghetti bolognese; a curry; scrambled
        eggs; pizza dough; a fruit salad; tomato soup; roast chicken; a smoothie; apple pie; risotto; chili;
        a quiche; sushi; a stir fry; brownies; porridge; guacamole; fish and chips; a burger; muffins;
        lemonade; hummus; fried rice; a sponge cake""",
    "food": """chicken; rice; pasta; salmon; broccoli; potatoes; tofu; eggs; beef; lentils; spinach; mushrooms;
        cheese; avocado; sweet potatoes; quinoa; chickpeas; prawns; lamb; carrots; courgettes; oats; bread""",
    "goal": """save money; lose weight; learn to play the guitar; make new friends; stop procrastinating;
        get fit; learn a new language; be more confident; wake up earlier; read more books; stop biting my
        nails; find a new job; manage my time; eat healthier; get a promotion; keep my room tidy; stop
        worrying; be a better listener; plan a wedding; stay motivated; quit smoking; improve my memory""",
    "choice": """move to a new city; go to university; buy a car; get a dog; change jobs; learn to drive;
        take a gap year; rent a flat; start my own business; go on holiday; buy a house; get a cat""",
    "life_event": """a job interview; a first date; a wedding; moving house; a long flight; an exam; a
        marathon; a camping trip; a new baby; a school reunion; a presentation at work; a dinner party""",
    "ailment": """a cold; the flu; a headache; a sore throat; back pain; hay fever; a sprained ankle; insomnia;
        a toothache; sunburn; a migraine; indigestion; a cough; an ear infection; a fever; stress; acne""",
    "habit": """running; coffee; walking; meditation; sleep; chocolate; cycling; stretching; fasting; swimming;
        tea; sugar; screen time; yoga; napping; dancing""",
    "famous": """Albert Einstein; Leonardo da Vinci; Mozart; Napoleon Bonaparte; Marie Curie; Isaac Newton;
        Abraham Lincoln; Mahatma Gandhi; Beethoven; Charles Darwin; Pablo Picasso; Nelson Mandela; Frida
        Kahlo; Vincent van Gogh; Martin Luther King; Amelia Earhart; Winston Churchill; Galileo; Florence
        Nightingale; Michelangelo; Charlie Chaplin; Elvis Presley; Neil Armstrong; Thomas Edison""",
    "invention": """telephone; light bulb; printing press; steam engine; aeroplane; bicycle; radio; television;
        camera; wheel; microwave oven; refrigerator; telescope; compass; clock; sewing machine; car""",
    "opinion_a": """pineapple on pizza; cats; summer; the beach; coffee; cold weather; football; jazz; big
        cities; early mornings; chocolate ice cream; reality TV; board games; city life; homework; winter""",
    "opinion_b": """dogs; winter; the mountains; tea; hot weather; tennis; pop music; small towns; late nights;
        vanilla ice cream; documentaries; card games; country life; holidays; spring""",
    "belief": "ghosts; aliens; luck; fate; horoscopes; magic; dragons; miracles; superstitions; lucky numbers",
    "chore": """do the laundry; water the plants; clean the oven; pay the bills; walk the dog; take out the
        rubbish; call my mother; vacuum the carpet; change the bed sheets; defrost the freezer; wash the car""",
    "item": """a new mattress; running shoes; a winter coat; a birthday cake; a second-hand bike; a good
        umbrella; a kettle; a sofa; fresh flowers; a rug; concert tickets; a suitcase; a frying pan""",
    "household": """washing machine; tap; fridge; toaster; door handle; radiator; zip; lamp; toilet; shower;
        vacuum cleaner""",
    "es_thing": "el chocolate; la música; un coche nuevo; el café; mi perro; la playa; un libro; la tarea; las flores",
    "es_place": "la estación; el mercado; mi casa; el parque; la biblioteca; el banco; la escuela; el hospital",
    "fr_thing": "le fromage; la musique; un café; mon chat; les vacances; un livre; mes devoirs; le pain",
    "fr_place": "la gare; le marché; la plage; la bibliothèque; l'école; la boulangerie; le musée; la mairie",
    "de_thing": "Schokolade; Musik; ein neues Fahrrad; Kaffee; meinen Hund; ein Buch; die Hausaufgaben; Brot",
    "de_place": "dem Bahnhof; dem Markt; der Schule; dem Park; der Bibliothek; dem Rathaus; der Bäckerei",
}.items()}
