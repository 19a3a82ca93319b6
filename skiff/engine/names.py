"""Random container names, Docker style (adjective_surname)."""

import random

LEFT = ["admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome",
        "beautiful", "blissful", "bold", "boring", "brave", "busy", "charming", "clever",
        "compassionate", "competent", "condescending", "confident", "cool", "cranky",
        "crazy", "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic",
        "elastic", "elated", "elegant", "eloquent", "epic", "exciting", "fervent",
        "festive", "flamboyant", "focused", "friendly", "frosty", "funny", "gallant",
        "gifted", "goofy", "gracious", "great", "happy", "hardcore", "heuristic",
        "hopeful", "hungry", "infallible", "inspiring", "intelligent", "interesting",
        "jolly", "jovial", "keen", "kind", "laughing", "loving", "lucid", "magical",
        "modest", "musing", "mystifying", "naughty", "nervous", "nice", "nifty",
        "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive",
        "practical", "priceless", "quirky", "quizzical", "relaxed", "reverent",
        "romantic", "sad", "serene", "sharp", "silly", "sleepy", "stoic", "strange",
        "stupefied", "suspicious", "sweet", "tender", "thirsty", "trusting", "upbeat",
        "vibrant", "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial",
        "youthful", "zealous", "zen"]
RIGHT = ["agnesi", "albattani", "allen", "archimedes", "babbage", "banach", "bardeen",
         "bartik", "bell", "bhabha", "blackwell", "bohr", "booth", "borg", "bose",
         "brahmagupta", "brattain", "brown", "carson", "cerf", "chandrasekhar",
         "chatelet", "clarke", "curie", "darwin", "davinci", "dijkstra", "dirac",
         "einstein", "elion", "engelbart", "euclid", "euler", "fermat", "fermi",
         "feynman", "franklin", "galileo", "gauss", "goldberg", "golick", "goodall",
         "haibt", "hamilton", "hawking", "heisenberg", "hermann", "hodgkin", "hofstadter",
         "hopper", "hypatia", "jang", "jennings", "johnson", "joliot", "kalam",
         "keller", "kepler", "khorana", "kilby", "knuth", "kowalevski", "lalande",
         "lamarr", "leakey", "leavitt", "lederberg", "lovelace", "lumiere", "mahavira",
         "mayer", "mccarthy", "mcclintock", "meitner", "mendel", "mirzakhani", "morse",
         "murdock", "napier", "newton", "nobel", "noether", "pare", "pascal", "pasteur",
         "perlman", "pike", "poincare", "ptolemy", "raman", "ramanujan", "ride",
         "ritchie", "roentgen", "sammet", "shannon", "shockley", "sinoussi", "snyder",
         "spence", "stonebraker", "swanson", "tesla", "thompson", "torvalds", "turing",
         "volhard", "wescoff", "wiles", "williams", "wilson", "wing", "wozniak",
         "wright", "yalow", "yonath"]


def random_name(taken) -> str:
    for i in range(100):
        name = f"{random.choice(LEFT)}_{random.choice(RIGHT)}"
        if i > 10:
            name += str(random.randint(0, 9))
        if name not in taken:
            return name
    return f"{random.choice(LEFT)}_{random.choice(RIGHT)}{random.randint(10, 99999)}"
