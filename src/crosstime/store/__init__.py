"""Activation store: harvest every checkpoint once, token-aligned, streaming, resumable.

    from crosstime.stages.harvest import HarvestConfig, harvest   # the stage, declared
    from crosstime.store import ActivationStore

    store = harvest(HarvestConfig(run="runs/x", series="toy/", revisions=["step0", "step512"], layer=1,
                                  tokens=1_000_000))   # -> runs/x/activations
    for x in store.batches(batch_size=4096, seed=0, epoch=0):   # float32 [B, M, d], normalised
        ...
    store.rows("step512", contexts=[3], positions=[17])          # raw float32 [1, d]

Layout, records and dtype: :mod:`crosstime.store.layout`; harvest: :mod:`crosstime.store.harvesting`;
reading and the shuffling scheme: :mod:`crosstime.store.reader`; every read is verified against
what the harvest recorded: :mod:`crosstime.store.integrity`; a lost manifest is rebuilt from the
chunk sidecars, never re-planned: :mod:`crosstime.store.recovery`; checkpoints' weight
fingerprints: :mod:`crosstime.store.fingerprint`.
"""

from crosstime.store.harvesting import HarvestConfig, resolve_config
from crosstime.store.layout import ManifestDamaged, StoreError, StoreIndexError
from crosstime.store.reader import ActivationStore

__all__ = ["ActivationStore", "HarvestConfig", "ManifestDamaged", "StoreError", "StoreIndexError", "resolve_config"]
