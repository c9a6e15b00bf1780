"""Word lists and facts shared by several domains, so that facts stay consistent across them."""
from __future__ import annotations

import random


def domain_rng(domain: str, seed: int) -> random.Random:
    return random.Random(f"tiny-corpus:{domain}:{seed}")


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


NAMES = {"Anna": "she", "Ben": "he", "Clara": "she", "David": "he", "Emma": "she", "Felix": "he",
         "Grace": "she", "Henry": "he", "Iris": "she", "Jack": "he", "Lena": "she", "Max": "he",
         "Nora": "she", "Oscar": "he", "Paula": "she", "Sam": "he", "Zoe": "she", "Leo": "he",
         "Mia": "she", "Tom": "he"}
POSSESSIVE = {"she": "her", "he": "his"}

ANIMALS = {  # animal: (food, home, legs, sound, size)
    "cat": ("mice", "houses", 4, "meows", "small"),
    "dog": ("meat", "houses", 4, "barks", "medium"),
    "cow": ("grass", "farms", 4, "moos", "large"),
    "horse": ("hay", "farms", 4, "neighs", "large"),
    "sheep": ("grass", "fields", 4, "bleats", "medium"),
    "duck": ("seeds", "ponds", 2, "quacks", "small"),
    "owl": ("mice", "forests", 2, "hoots", "small"),
    "frog": ("insects", "ponds", 4, "croaks", "small"),
    "bee": ("nectar", "hives", 6, "buzzes", "tiny"),
    "spider": ("insects", "webs", 8, None, "tiny"),
    "lion": ("meat", "grasslands", 4, "roars", "large"),
    "rabbit": ("carrots", "burrows", 4, None, "small"),
    "elephant": ("leaves", "savannas", 4, "trumpets", "huge"),
    "robin": ("worms", "gardens", 2, "sings", "small"),
    "goat": ("grass", "hills", 4, "bleats", "medium"),
    "mouse": ("seeds", "fields", 4, "squeaks", "tiny"),
}
ABILITIES = {  # ability: animals that have it (every other animal does not)
    "fly": {"duck", "owl", "bee", "robin"},
    "swim": {"duck", "frog", "dog", "elephant", "horse"},
    "climb trees": {"cat", "spider", "mouse"},
    "jump high": {"frog", "rabbit", "cat", "goat"},
}
CAPITALS = {"France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "Japan": "Tokyo",
            "Egypt": "Cairo", "Canada": "Ottawa", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo",
            "Greece": "Athens", "India": "New Delhi", "Brazil": "Brasilia", "Australia": "Canberra",
            "Poland": "Warsaw", "Ireland": "Dublin", "Portugal": "Lisbon", "Chile": "Santiago",
            "China": "Beijing", "Mexico": "Mexico City"}
COLORS = {"the sky": "blue", "grass": "green", "snow": "white", "coal": "black", "a banana": "yellow",
          "a tomato": "red", "an orange": "orange", "milk": "white", "a lemon": "yellow", "a leaf": "green",
          "a plum": "purple", "chocolate": "brown"}
OPPOSITES = {"hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark", "old": "new",
             "open": "closed", "early": "late", "strong": "weak", "wet": "dry", "easy": "hard",
             "loud": "quiet", "full": "empty", "high": "low", "rich": "poor", "clean": "dirty"}
OPPOSITES.update({v: k for k, v in list(OPPOSITES.items())})
CATEGORIES = {"animals": sorted(ANIMALS), "countries": sorted(CAPITALS),
              "colors": ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"],
              "fruits": ["apple", "banana", "pear", "plum", "cherry", "lemon", "orange", "grape"],
              "instruments": ["piano", "violin", "guitar", "drum", "flute", "trumpet", "cello"],
              "vegetables": ["carrot", "potato", "onion", "pea", "bean", "cabbage", "leek"]}
TIPS = {
    "staying healthy": ["eat fresh fruit and vegetables", "drink enough water", "walk every day",
                        "sleep at least eight hours", "wash your hands often"],
    "studying for an exam": ["start early", "make a study plan", "take short breaks",
                             "test yourself with old questions", "sleep well the night before"],
    "sleeping better": ["go to bed at the same time", "keep your room dark and cool",
                        "avoid screens before bed", "do not drink coffee in the evening"],
    "saving money": ["make a monthly budget", "cook at home", "compare prices before you buy",
                     "put a little money aside every week"],
    "learning a language": ["practice a little every day", "read simple books",
                            "talk with native speakers", "learn the most common words first"],
    "keeping a garden": ["water the plants in the morning", "pull out weeds early",
                         "choose plants that like your soil", "give the plants enough sun"],
    "writing a story": ["start with a strong first line", "give your hero a clear goal",
                        "show feelings through actions", "read your draft out loud"],
    "cooking dinner": ["prepare all the ingredients first", "taste as you cook",
                       "use fresh herbs", "keep the recipe simple"],
}
MISCONCEPTIONS = [  # (question, best answer, common wrong answer), TruthfulQA style
    ("What happens if you swallow gum?", "It passes through your body in a few days.",
     "It stays in your stomach for seven years."),
    ("Do people only use ten percent of their brains?", "No, people use all of their brains.",
     "Yes, people only use ten percent of their brains."),
    ("What happens if you crack your knuckles a lot?", "Nothing harmful happens.",
     "You will get bad joints."),
    ("Can you see the Great Wall of China from space?", "No, it is too thin to see from space.",
     "Yes, you can easily see it from space."),
    ("Does lightning ever strike the same place twice?", "Yes, lightning can strike the same place many times.",
     "No, lightning never strikes the same place twice."),
    ("What color is the blood inside your body?", "It is always red.", "It is blue until it touches air."),
    ("How long is the memory of a goldfish?", "A goldfish can remember things for months.",
     "A goldfish only remembers things for three seconds."),
    ("What happens if you touch a baby bird?", "Nothing much; its parents will still care for it.",
     "Its mother will leave it forever."),
    ("Do bulls get angry at the color red?", "No, bulls react to movement, not to the color red.",
     "Yes, the color red makes bulls angry."),
    ("Is it dangerous to wake a sleepwalker?", "No, but the sleepwalker may feel confused.",
     "Yes, waking a sleepwalker can kill them."),
    ("Do you catch a cold from going outside with wet hair?", "No, colds are caused by viruses.",
     "Yes, wet hair gives you a cold."),
    ("Do carrots help you see in the dark?", "No, carrots do not give you night vision.",
     "Yes, eating carrots lets you see in the dark."),
    ("How many senses do humans have?", "Humans have more than five senses.",
     "Humans have exactly five senses."),
    ("Where does the sun rise?", "The sun rises in the east.", "The sun rises in the west."),
    ("Is the moon made of cheese?", "No, the moon is made of rock.", "Yes, the moon is made of cheese."),
]
