"""The engine: fit, evaluate and predict, each read top-down in its own module.

* :mod:`.fit`: argument checks, data, callbacks, the epoch loop and the batch loop;
* :mod:`.evaluate`, :mod:`.predict`: the other two entry points; :mod:`.outputs`: predict's output collector;
* :mod:`.epochs`: fit's validation cadence, limits and debug runs; :mod:`.displays`: what fit shows;
* :mod:`.execution`: ``self(x)`` inside a step goes through DDP / DataParallel / torch.compile and autocast;
* :mod:`.step`: the optimizer step (backward, accumulation, penalty, clipping, scaler, LR);
* :mod:`.logs`: step logs on the device, epoch logs read once;
* :mod:`.session`: the per-call :class:`~.session.Session` and the model's :class:`~.session.FitRecord`;
* :mod:`.signals`: Ctrl-C / SIGTERM handling during fit;
* :mod:`.lr_find`: the learning-rate range test behind ``Model.lr_find``;
* :mod:`.snapshot`: the restore point that leaves a model exactly as it was after ``lr_find``.
* :mod:`.guards`: once-per-call guards (steps per epoch, BatchNorm's last batch) and failing batches named.
* :mod:`.reentry`: one call at a time per model (which calls may nest, which are refused);
* :mod:`.resume`: the checkpoint a fit resumes from, checked before any callback runs.
"""
