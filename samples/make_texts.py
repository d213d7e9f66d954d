"""Build `texts.npz`, kdcli's bundled text sample: a synthetic corpus of short texts on four topics.

Run by a maintainer, from the repository root:

    python samples/make_texts.py                 # writes samples/texts.npz
    python samples/make_texts.py --folder DIR    # also writes it as a text folder

Nothing is downloaded: every text is drawn from the word lists below with a
fixed seed, so running the script again writes the same arrays. The split is
the one kdcli applies to any `x, y` file with the default `--val-split 0.2`
(stratified by class, fixed seed).

How a text of topic T is made (10 to 40 words): most words come from a large
vocabulary shared by all topics (common words and made-up names); some from
T's own words; some from words two topics share ("record": business and
sports); a few from another topic's own words, to confuse. So a bag of words
classifies most texts but not all (about 90% on the test split). Some texts
hold a two-word phrase whose words every topic uses but whose order depends
on the topic ("annual report" or "report annual"): only a model that reads
word order gets that signal.
"""

import argparse
from pathlib import Path

import numpy as np

from kdcli.data import SPLIT_SEED, stratified_split, write_text_folder

SEED = 20240611
N_TEXTS = 2000
MIN_WORDS, MAX_WORDS = 10, 40
# Class ids follow the names' sorted order, as a text folder numbers its class folders.
CLASS_NAMES = ("arts", "business", "science", "sports")

TOPIC_WORDS = {
    "arts": """painting gallery sculpture canvas portrait museum exhibition artist brush poetry novel theatre
        stage actor melody orchestra symphony concert dancer ballet sketch mural director script chorus sonnet
        author curator watercolour opera pianist violin composer poet novelist rehearsal premiere sculptor
        cinema screenplay choir fresco etching libretto soprano""",
    "business": """shares profit revenue investor bank loan merger startup quarterly earnings stock dividend
        inflation budget contract customer retail supplier invoice tax economy export salary executive board
        acquisition bond currency shareholder lender audit payroll wholesale franchise tariff mortgage
        portfolio broker equity accountant subsidiary layoffs forecast""",
    "science": """experiment laboratory molecule physics chemistry biology telescope galaxy neutron protein
        genome cell theory hypothesis microscope researcher climate fossil particle quantum enzyme orbit planet
        vaccine species atom electron reactor specimen bacteria virus asteroid magnetic isotope nucleus
        equation catalyst organism satellite physicist chemist geologist""",
    "sports": """goal striker coach league tournament stadium referee championship keeper penalty athlete
        marathon sprint medal tennis football basketball cricket racket defender trophy olympic cyclist
        swimmer fans midfielder goalkeeper playoff innings wicket rugby hockey boxer sprinter relay podium
        dribble tackle umpire batsman quarterback""",
}

# Words two topics share: they narrow a text down to two topics, not one.
CROSS_WORDS = {
    ("arts", "sports"): "performance season audience festival star rehearsed debut applause",
    ("business", "sports"): "record transfer deal sponsor ranking value negotiation champion",
    ("science", "business"): "data model analysis growth energy technology patent innovation",
    ("arts", "science"): "design pattern light colour sound structure form imagination",
    ("arts", "business"): "studio brand auction collection publisher licence royalties agency",
    ("science", "sports"): "speed endurance training measurement oxygen muscle injury fitness",
}

SHARED_WORDS = """the a an of in on at to for with from by about after before during over under between
    and or but so because while when where then than also only just still even very more most less many
    few some all every each other another this that these those its their his her our new old first last
    next early late big small great long short high low good bad young major minor local national public
    private recent annual weekly daily former final open free full main own same several whole people
    year week day month city town country world group team report plan news story weekend morning evening
    night time place part case point way life work home family school friend street road house office
    question issue problem change result reason idea fact number level area side end line kind show event
    meeting interview visit trip journey visitors residents officials members leaders staff students
    said says told asked announced reported started began opened closed made took gave found showed brought
    called left kept held won lost met moved planned hoped expected added explained described returned
    joined followed decided continued remained became seemed looked turned helped needed wanted tried
    around across along near inside outside again already always often never sometimes soon today yesterday
    tomorrow tonight here there now later together almost nearly quite rather really perhaps maybe
    clearly quickly slowly finally suddenly""".split()

# Phrases every topic uses, each topic in its own word order.
ORDER_PAIRS = [("annual", "report"), ("local", "group"), ("first", "meeting"), ("public", "event"),
               ("final", "result"), ("major", "change")]

# Shares of a text's words: the topic's own words, words it shares with another topic,
# another topic's own words (confusers), made-up names; the rest is shared vocabulary.
SHARE_OWN, SHARE_CROSS, SHARE_OTHER, SHARE_NAMES = 0.13, 0.05, 0.025, 0.06
PHRASE_CHANCE = 0.5


def made_up_names(rng, n):
    """`n` distinct pronounceable names ("Varnel"), the shared vocabulary's long tail."""
    onsets, vowels, codas = "b c d f g h k l m n p r s t v w z br dr gr kr st tr".split(), "a e i o u ai ea io".split(), "l n r s t x m nd rt".split()
    names = set()
    while len(names) < n:
        syllables = [rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.integers(2, 4))]
        names.add(("".join(syllables) + rng.choice(codas)).capitalize())
    return sorted(names)


def make_corpus(n=N_TEXTS, seed=SEED):
    """The synthetic texts and their labels.

    Args:
        n: number of texts, balanced over the four topics.
        seed: the seed every choice is drawn from.

    Returns:
        `(texts, labels)`: a `U` array of `n` texts and an int64 array of class ids
        (the index in `CLASS_NAMES`).
    """
    rng = np.random.default_rng(seed)
    own = {c: TOPIC_WORDS[c].split() for c in CLASS_NAMES}
    cross = {c: [w for pair, words in CROSS_WORDS.items() if c in pair for w in words.split()] for c in CLASS_NAMES}
    names = made_up_names(rng, 400)
    # each topic's word order for each phrase: a fixed random pattern per topic
    orient = {c: rng.integers(0, 2, len(ORDER_PAIRS)) for c in CLASS_NAMES}
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))
    shares = np.array([SHARE_OWN, SHARE_CROSS, SHARE_OTHER, SHARE_NAMES])
    texts = []
    for label in labels:
        topic = CLASS_NAMES[label]
        others = [c for c in CLASS_NAMES if c != topic]
        words = []
        for kind in rng.choice(5, size=rng.integers(MIN_WORDS, MAX_WORDS + 1), p=[*shares, 1 - shares.sum()]):
            pool = (own[topic], cross[topic], own[others[rng.integers(len(others))]], names, SHARED_WORDS)[kind]
            words.append(pool[rng.integers(len(pool))])
        if rng.random() < PHRASE_CHANCE:
            k = rng.integers(len(ORDER_PAIRS))
            phrase = ORDER_PAIRS[k][::-1] if orient[topic][k] else ORDER_PAIRS[k]
            at = rng.integers(len(words) - 1)
            words[at:at + 2] = phrase
        text = " ".join(words)
        texts.append(text[0].upper() + text[1:] + ".")
    return np.array(texts), labels.astype(np.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="also write the sample as a text folder (train/CLASS/NNNN.txt, test/...)")
    args = parser.parse_args()
    x, y = make_corpus()
    train, test = stratified_split(y, 0.2, SPLIT_SEED)
    out = Path(__file__).with_name("texts.npz")
    np.savez_compressed(out, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
    print(f"{out}: {len(train)} train, {len(test)} test, {out.stat().st_size} bytes")
    if args.folder:
        write_text_folder(args.folder, x[train], y[train], CLASS_NAMES, test=(x[test], y[test]))
        print(f"{args.folder}: train/ and test/ folders of {', '.join(CLASS_NAMES)}")


if __name__ == "__main__":
    main()
