"""TOPLA-Weighted fusion beats the best member of a pool whose errors are complementary."""
import numpy as np

from ensembles.fusion import FusionSettings, fit_fusion, topla_mlp


def complementary_pool(num_samples, seed):
    """3 members, 4 answers: member m is wrong on the samples with n % 3 == m (there it puts its mass on
    (label + 1 + m) % 4), confident but noisy everywhere: each member alone is right on 2/3."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, num_samples)
    probs = rng.dirichlet(np.ones(4), size=(num_samples, 3)) * 0.3
    for m in range(3):
        wrong = np.arange(num_samples) % 3 == m
        picked = np.where(wrong, (labels + 1 + m) % 4, labels)
        probs[np.arange(num_samples), m, picked] += 0.7
    return probs, labels


def test_topla_weighted_beats_the_best_member():
    train, train_labels = complementary_pool(300, 0)
    val, val_labels = complementary_pool(90, 1)
    test, test_labels = complementary_pool(150, 2)
    fitted = fit_fusion(train, train_labels, val, val_labels, FusionSettings(epochs=20, seed=0))
    best_member = max(float((test[:, m].argmax(-1) == test_labels).mean()) for m in range(3))
    fused = float((fitted.predict(test) == test_labels).mean())
    assert best_member < 0.7 and fused > best_member + 0.2
    assert 1 <= fitted.best_epoch <= 20 and fitted.validation_accuracy > 0.9


def test_the_mlp_has_the_papers_shape_and_ends_in_logits():
    mlp = topla_mlp(3, 4)
    widths = [(layer.in_features, layer.out_features) for layer in mlp if hasattr(layer, "in_features")]
    assert widths == [(12, 100), (100, 100), (100, 4)]
    assert type(mlp[-1]).__name__ == "Linear"  # no softmax before the cross-entropy
