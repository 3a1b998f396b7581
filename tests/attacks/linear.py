"""A fixed-weight linear classifier whose minimal L-inf attack is known.

For f(x) = W^T x + b, class j beats the label y once the margin
m_j = (w_y - w_j) . x + b_y - b_j is gone; an L-inf perturbation of size d
moves m_j by at most d * ||w_y - w_j||_1 (along -sign(w_y - w_j)). So with
the [0, 1] box out of reach (pixels in [0.3, 0.7], eps <= 0.3) a point is
robust at eps iff min_j m_j / ||w_y - w_j||_1 > eps.
"""
import numpy as np
import tensorflow as tf


def make(num_classes, num_points=200, seed=0, shape=(4, 4, 1)):
  """(forward, x, y, radius): y is the clean prediction; radius [N] the
  minimal L-inf distance to another class."""
  rng = np.random.default_rng(seed)
  dim = int(np.prod(shape))
  w = rng.normal(size=(dim, num_classes)).astype(np.float32)
  # Centred on the middle of the box: every class is within reach.
  b = (-0.5 * w.sum(0) + 0.1 * rng.normal(size=num_classes)).astype(np.float32)
  x = rng.uniform(0.3, 0.7, size=(num_points, *shape)).astype(np.float32)
  z = x.reshape(num_points, -1) @ w + b
  y = z.argmax(1).astype(np.int32)
  radius = np.full(num_points, np.inf)
  for j in range(num_classes):
    gap = np.abs(w[:, y] - w[:, [j]]).sum(0)  # ||w_y - w_j||_1 per point
    m = z[np.arange(num_points), y] - z[:, j]
    radius = np.where(j == y, radius,
                      np.minimum(radius, m / np.maximum(gap, 1e-12)))

  def forward(images):
    flat = tf.reshape(images, [tf.shape(images)[0], -1])
    return tf.matmul(flat, w) + b

  return forward, x, y, radius


def robust_accuracy(forward, x_adv, y):
  return float(np.mean(np.argmax(forward(x_adv).numpy(), -1) == y))
