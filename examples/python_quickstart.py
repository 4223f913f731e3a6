"""lgss from Python, for a newcomer: read a MovieScenes pickle safely,
segment it with an exported model, score the result as the challenge does.

After `scripts/wheel` (it builds the package and installs it into the Python
you run it with) and the CLI's `lgss train` + `lgss export --onnx` (or
`scripts/demo`, whose model is demo/runs/latest/model.onnx):

    python examples/python_quickstart.py demo/runs/latest/model.onnx demo/test/tt0000011.pkl
"""

import sys

import lgss


def main(model_path: str, movie_path: str) -> None:
    # lgss's reader: a file that carries code (pickle.load would run it) is
    # refused with lgss.InvalidMovie, a ValueError naming the file.
    movie = lgss.load_movie(movie_path)
    print(f"{movie.imdb_id}: {movie.n_shots} shots, place {movie.place.shape} {movie.place.dtype}")

    model = lgss.Model(model_path, runtime="tract")  # or "ort-cpu" with onnxruntime installed
    print(f"model: threshold {model.decision_threshold}, grouping choice {model.grouping_choice}")
    prob = model.probabilities(movie)  # the model's own, one per boundary
    scenes = model.segment(movie)  # global grouping, as `lgss segment` decides
    print(f"{len(scenes)} scenes by the {scenes.rule} rule; the first three:")
    for s in scenes.scenes[:3]:
        print(f"  shots {s['first_shot']}-{s['last_shot']}  {s['start']} - {s['end']}")
    local = model.segment(movie, rule="local")  # the threshold rule
    print(f"the threshold rule alone: {len(local)} scenes")

    if movie.boundary_ground_truth is not None:
        for name, p in [("model probabilities", prob), ("global grouping", scenes.boundary_probabilities)]:
            s = lgss.evaluate(
                {movie.imdb_id: movie.boundary_ground_truth},
                {movie.imdb_id: p},
                {movie.imdb_id: movie.shot_end_frame},
            )
            print(f"{name}: AP {s['AP']:.3f}  Miou {s['Miou']:.3f}  F1 {s['F1']:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
