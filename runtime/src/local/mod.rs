//! The local backend behind `flint dev`: each replica is a child process.
