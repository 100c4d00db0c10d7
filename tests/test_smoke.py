from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier


def test_image_fit_predict(image_data, tiny_image_params):
    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params).fit(X, y)
    assert set(clf.predict(X)) <= set(y)


def test_text_fit_predict(text_data, tiny_text_params):
    X, y = text_data
    clf = PretrainedTextClassifier(**{**tiny_text_params, "lr": 1e-2, "max_epochs": 20}).fit(X, y)
    assert clf.score(X, y) > 0.9
