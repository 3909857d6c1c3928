# Where sharded stages run: the one place to choose, like Kaldi's cmd.sh (sourced by
# distill_stages.sh; a recipe's --nj and --launcher options, or the environment, override it).
#   launcher=local            nj processes on this machine, in parallel
#   launcher="slurm OPTS"     one Slurm job array of nj tasks (sbatch --array=1-nj OPTS --wait)
#                             e.g. launcher="slurm --partition=cpu --cpus-per-task=4 --mem=8G"
# nj: shards of compute-fbank and dump-posteriors (1: one process, as without a launcher).
launcher="${AMDISTILL_LAUNCHER:-local}"
nj="${AMDISTILL_NJ:-1}"
