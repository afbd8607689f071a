"""Reference outputs for tests/Graft.Tests/Data: the tiny ScienceQA images, the expected MMLU prompts
(CSV read by Python's csv module, Hendrycks evaluate.py format) and the expected LaVIN ScienceQA
prompt/target pairs (util/base_prompt.py, format QCM-ALE, no captions), each written independently
of the C# code. Run with Debian's /usr/bin/python3 from the repository root."""
import csv
import json
import os

from PIL import Image

ROOT = "tests/Graft.Tests/Golden/data"
LETTERS = "ABCDE"


def write_images():
    for split, qid, colour in (("test", "101", (200, 30, 30)), ("val", "104", (30, 30, 200))):
        folder = os.path.join(ROOT, "scienceqa/good/images", split, qid)
        os.makedirs(folder, exist_ok=True)
        image = Image.new("RGB", (4, 3), (240, 240, 240))
        image.putpixel((1, 1), colour)
        image.save(os.path.join(folder, "image.png"))


def read_mmlu(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    assert all(len(row) == 6 for row in rows), path
    return rows


def mmlu_example(row, with_answer):
    text = row[0] + "".join(f"\n{LETTERS[i]}. {row[1 + i]}" for i in range(4)) + "\nAnswer:"
    return text + (f" {row[5]}\n\n" if with_answer else "")


def mmlu_prompts():
    subject = "high_school_physics"
    dev = read_mmlu(os.path.join(ROOT, "mmlu/dev", f"{subject}_dev.csv"))
    test = read_mmlu(os.path.join(ROOT, "mmlu/test", f"{subject}_test.csv"))
    header = "The following are multiple choice questions (with answers) about {}.\n\n".format(
        "".join(" " + word for word in subject.split("_")))
    shots = "".join(mmlu_example(row, True) for row in dev)
    result = {"subject": subject, "rows": test, "prompts": [header + shots + mmlu_example(row, False) for row in test]}
    with open(os.path.join(ROOT, "mmlu/expected_prompts.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)


def lavin_pair(problem):
    context = problem["hint"].strip() or "N/A"
    options = " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(problem["choices"]))
    prompt = f"\nQuestion: {problem['question']}\nContext: {context}\nOptions: {options}\nResponse:"
    prompt = prompt.replace("  ", " ").strip()
    lecture = problem["lecture"].replace("\n", "\\n")
    solution = problem["solution"].replace("\n", "\\n")
    target = f"The answer is {LETTERS[problem['answer']]}. BECAUSE: {lecture} {solution}".replace("  ", " ").strip()
    if target.endswith("BECAUSE:"):  # LaVIN meant to drop it (its eval builder does); see ScienceQaProblem.Target
        target = target[: -len("BECAUSE:")].strip()
    return [prompt, target]


def lavin_prompts():
    with open(os.path.join(ROOT, "scienceqa/good/problems.json"), encoding="utf-8") as f:
        problems = json.load(f)
    with open(os.path.join(ROOT, "scienceqa/good/expected_lavin.json"), "w", encoding="utf-8") as f:
        json.dump({qid: lavin_pair(p) for qid, p in problems.items()}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    write_images()
    mmlu_prompts()
    lavin_prompts()
