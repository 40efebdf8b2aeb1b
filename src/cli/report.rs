//! Printing held-out results as plain-text tables (shared by `train` and `evaluate`).

use crate::train::{Evaluation, NoiseSetting, SnrSweep};

pub fn print_outcome(
    test: Option<&Evaluation>,
    test_noise: Option<NoiseSetting>,
    clean_test: Option<&Evaluation>,
    sweep: Option<&SnrSweep>,
) {
    let Some(test) = test else {
        println!("no test data: nothing held out to evaluate on");
        return;
    };
    match test_noise {
        Some(noise) => println!("\ntest set with {noise} noise"),
        None => println!("\ntest set"),
    }
    print!("{}", test.table());
    println!("\nconfusion matrix (rows: true class, columns: predicted)");
    print!("{}", test.confusion_table());
    if let Some(clean) = clean_test {
        println!("\nclean test set: accuracy {:.2}% of {} samples", 100.0 * clean.accuracy, clean.samples);
    }
    if let Some(sweep) = sweep {
        println!(
            "\nSNR sweep: accuracy (%) with noise added to the clean test windows ({} samples, seed {})",
            sweep.samples, sweep.seed
        );
        print!("{}", sweep.table());
    }
}
