"""The PyTorch port of the S-IntroVAE reference's 2-D training iteration
(taldatech/soft-intro-vae-pytorch, soft_intro_vae_2d/train_soft_intro_vae_2d.py), and the
copies of our Keras state into it: what `tools/lockstep_reference.py` runs beside our step and
`tools/reference_2d.py` trains on its own. Needs PyTorch (passed in as `torch`; this module
imports neither it nor TensorFlow)."""


def reference_port(torch, num_hidden, num_layers, z_dim, x_dim=2):
  """The reference's `SoftIntroVAESimple` (its encoder and decoder `nn.Sequential`s).

  Returns (encoder, decoder): `nn.Sequential` of Linear/ReLU with PyTorch's default
  initialization: the encoder maps float32 [B, x_dim] to [B, 2 * z_dim], which
  `chunk(2, dim=1)` splits into (mu, logvar), each [B, z_dim] (logvar the log of the posterior
  variance); the decoder maps [B, z_dim] to [B, x_dim].
  """
  nn = torch.nn

  def mlp(d_in, d_out):
    layers = [nn.Linear(d_in, num_hidden), nn.ReLU()]
    for _ in range(num_layers):
      layers += [nn.Linear(num_hidden, num_hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(num_hidden, d_out))

  return mlp(x_dim, 2 * z_dim), mlp(z_dim, x_dim)


class ReferenceStep:
  """One iteration of `train_soft_intro_vae_toy`, the noise passed in.

  Lines of the reference, in order (`dim_scale` = s = 0.5 for 2-D data, `recon_loss_type` mse):
    warm-up (it < num_vae): loss = beta_rec * rec + beta_kl * kl, both optimizers step;
    E: fake = D(noise); z = mu + eps * std; rec = D(z); model(fake.detach()); model(rec.detach());
       loss_rec_rec = rec(rec, rec_rec) with `rec` NOT detached; expELBOs with exp(-2 s (...));
       lossE = s (beta_kl kl + beta_rec rec) + 0.25 (exp_elbo_fake + exp_elbo_rec);
    D: fake = D(noise); rec = D(z.detach()); encode(rec), encode(fake) (encoder frozen, gradient
       through it); rec_rec = D(z_rec.detach()), rec_fake = D(z_fake.detach());
       lossD = s (beta_rec rec + 0.5 beta_kl (kl_fake + kl_rec)
                  + gamma_r 0.5 beta_rec (rec_rec + rec_fake));
    both MultiStepLR schedulers step once per iteration.
  """

  def __init__(self, torch, encoder, decoder, lr, milestones, gamma, hp, num_vae):
    self.torch = torch
    self.encoder, self.decoder = encoder, decoder
    optim = torch.optim
    self.opt_e = optim.Adam(encoder.parameters(), lr=lr)
    self.opt_d = optim.Adam(decoder.parameters(), lr=lr)
    self.sched_e = optim.lr_scheduler.MultiStepLR(self.opt_e, milestones=milestones, gamma=gamma)
    self.sched_d = optim.lr_scheduler.MultiStepLR(self.opt_d, milestones=milestones, gamma=gamma)
    self.hp, self.num_vae = hp, num_vae

  def encode(self, x):
    return self.encoder(x).chunk(2, dim=1)

  @staticmethod
  def rec_loss(x, y, reduction):
    err = ((y - x) ** 2).sum(1)  # F.mse_loss(reduction='none').sum(1)
    return err.mean() if reduction == "mean" else err

  @staticmethod
  def kl(logvar, mu, reduce):
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return kl.mean() if reduce == "mean" else kl

  def set_grad(self, net, on):
    for p in net.parameters():
      p.requires_grad = on

  def __call__(self, it, x, noise):
    hp, s = self.hp, 0.5
    if it < self.num_vae:
      self.set_grad(self.encoder, True)
      self.set_grad(self.decoder, True)
      mu, logvar = self.encode(x)
      rec = self.decoder(mu + noise["eps"] * self.torch.exp(0.5 * logvar))
      loss = hp["beta_rec"] * self.rec_loss(x, rec, "mean") + hp["beta_kl"] * self.kl(
        logvar, mu, "mean"
      )
      self.opt_e.zero_grad()
      self.opt_d.zero_grad()
      loss.backward()
      self.opt_e.step()
      self.opt_d.step()
    else:
      # === Update E ===
      self.set_grad(self.encoder, True)
      self.set_grad(self.decoder, False)
      fake = self.decoder(noise["z_p"])
      real_mu, real_logvar = self.encode(x)
      z = real_mu + noise["eps"] * self.torch.exp(0.5 * real_logvar)
      rec = self.decoder(z)
      loss_rec = self.rec_loss(x, rec, "mean")
      kl_real = self.kl(real_logvar, real_mu, "mean")
      fake_mu, fake_logvar = self.encode(fake.detach())
      rec_fake = self.decoder(fake_mu + noise["eps_f"] * self.torch.exp(0.5 * fake_logvar))
      rec_mu, rec_logvar = self.encode(rec.detach())
      rec_rec = self.decoder(rec_mu + noise["eps_r"] * self.torch.exp(0.5 * rec_logvar))
      fake_kl_e = self.kl(fake_logvar, fake_mu, "none")
      rec_kl_e = self.kl(rec_logvar, rec_mu, "none")
      loss_fake_rec = self.rec_loss(fake, rec_fake, "none")
      loss_rec_rec = self.rec_loss(rec, rec_rec, "none")  # `rec` not detached
      b_rec, b_neg = hp["beta_rec"], hp["beta_neg"]
      exp_fake = (-2 * s * (b_rec * loss_fake_rec + b_neg * fake_kl_e)).exp().mean()
      exp_rec = (-2 * s * (b_rec * loss_rec_rec + b_neg * rec_kl_e)).exp().mean()
      loss_e = s * (hp["beta_kl"] * kl_real + b_rec * loss_rec) + 0.25 * (exp_fake + exp_rec)
      self.opt_e.zero_grad()
      loss_e.backward()
      self.opt_e.step()
      # === Update D ===
      self.set_grad(self.encoder, False)
      self.set_grad(self.decoder, True)
      fake = self.decoder(noise["z_p"])
      rec = self.decoder(z.detach())
      loss_rec = self.rec_loss(x, rec, "mean")
      rec_mu, rec_logvar = self.encode(rec)
      z_rec = rec_mu + noise["eps_r_d"] * self.torch.exp(0.5 * rec_logvar)
      fake_mu, fake_logvar = self.encode(fake)
      z_fake = fake_mu + noise["eps_f_d"] * self.torch.exp(0.5 * fake_logvar)
      rec_rec = self.decoder(z_rec.detach())
      rec_fake = self.decoder(z_fake.detach())
      loss_rec_rec = self.rec_loss(rec.detach(), rec_rec, "mean")
      loss_rec_fake = self.rec_loss(fake.detach(), rec_fake, "mean")
      fake_kl = self.kl(fake_logvar, fake_mu, "mean")
      rec_kl = self.kl(rec_logvar, rec_mu, "mean")
      loss_d = (
        b_rec * loss_rec
        + 0.5 * hp["beta_kl"] * (fake_kl + rec_kl)
        + hp["gamma_r"] * 0.5 * b_rec * (loss_rec_rec + loss_rec_fake)
      )
      loss_d = s * loss_d
      self.opt_d.zero_grad()
      loss_d.backward()
      self.opt_d.step()
    self.sched_e.step()
    self.sched_d.step()


def _dense_layers(keras_net):
  return [
    layer for layer in keras_net.layers if layer.weights and "dense" in type(layer).__name__.lower()
  ]


def keras_flat(torch, net):
  """Our network's weights in the port's parameter order (Linear weight [out, in], bias),
  float64 [P]."""
  parts = []
  for layer in _dense_layers(net):
    kernel, bias = (w.numpy() for w in layer.weights)
    parts += [torch.from_numpy(kernel.T.copy()).reshape(-1), torch.from_numpy(bias.copy())]
  return torch.cat(parts).double()


def flat(torch, net):
  """The port's weights, float64 [P]."""
  return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).double()


def load_our_state(torch, keras_net, keras_opt, torch_net, torch_opt):
  """Sets the port's weights and Adam state (exp_avg, exp_avg_sq, step) to ours."""
  linear = [m for m in torch_net if isinstance(m, torch.nn.Linear)]
  dense = _dense_layers(keras_net)
  if len(dense) != len(linear):
    raise ValueError(f"{keras_net.name}: {len(dense)} Dense layers, the port has {len(linear)}")
  steps = int(keras_opt.iterations.numpy())
  dtype = linear[0].weight.dtype

  def to_torch(a):  # Keras kernel [in, out] -> Linear weight [out, in]; biases as they are
    return torch.from_numpy(a.T.copy() if a.ndim == 2 else a.copy()).to(dtype)

  with torch.no_grad():
    for d, lin in zip(dense, linear):
      for var, param in zip(d.weights, (lin.weight, lin.bias)):
        param.copy_(to_torch(var.numpy()))
        if steps == 0:
          torch_opt.state.pop(param, None)
          continue
        index = keras_opt._get_variable_index(var)  # pylint: disable=protected-access
        torch_opt.state[param] = {
          "step": torch.tensor(float(steps)),
          "exp_avg": to_torch(keras_opt._momentums[index].numpy()),  # pylint: disable=protected-access
          "exp_avg_sq": to_torch(keras_opt._velocities[index].numpy()),  # pylint: disable=protected-access
        }
