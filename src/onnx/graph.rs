//! A small builder for an ONNX graph: named initialisers, nodes with one output each, and
//! attribute helpers. Names are unique by construction (a counter), so callers never
//! have to invent them.

use super::proto::{
    AttributeProto, Dimension, GraphProto, NodeProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto, ATTR_FLOAT, ATTR_INT, ATTR_INTS, FLOAT, INT64,
};
use super::OnnxError;

#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next: usize,
}

impl Graph {
    /// A float constant of shape `dims`.
    pub fn constant(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto { dims: dims.to_vec(), data_type: FLOAT, name: name.to_string(), raw_data });
        name.to_string()
    }

    /// A 1-D int64 constant (axes, pads, slice bounds).
    pub fn ints(&mut self, values: &[i64]) -> String {
        let name = self.fresh("ints");
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims = vec![values.len() as i64];
        self.initializers.push(TensorProto { dims, data_type: INT64, name: name.clone(), raw_data });
        name
    }

    /// Adds `op(inputs)` and returns the name of its one output.
    pub fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let output = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: output.clone(),
            op_type: op.to_string(),
            attribute,
        });
        output
    }

    /// Renames the value `value`, which exactly one node makes, to the graph-output name
    /// `name`, where it is made and wherever it is read (an `Identity` node would cost a copy
    /// a run). `value` must not be used after.
    pub fn rename(&mut self, value: &str, name: &str) -> Result<(), OnnxError> {
        let makers = self.nodes.iter().filter(|n| n.output.iter().any(|o| o == value)).count();
        if makers != 1 {
            return Err(OnnxError::Export(format!("{value} is made by {makers} nodes, not one")));
        }
        for node in &mut self.nodes {
            for v in node.input.iter_mut().chain(node.output.iter_mut()) {
                if v == value {
                    *v = name.to_string();
                }
            }
        }
        Ok(())
    }

    fn fresh(&mut self, what: &str) -> String {
        self.next += 1;
        format!("{}_{}", what.to_lowercase(), self.next)
    }

    /// The finished graph with one float input of `input_shape` (`None`: the free batch
    /// axis) and float outputs named `outputs`.
    pub fn finish(self, input: &str, input_shape: &[Option<i64>], outputs: &[String]) -> GraphProto {
        let dims = input_shape
            .iter()
            .map(|d| match d {
                Some(n) => Dimension { dim_value: Some(*n), dim_param: None },
                None => Dimension { dim_value: None, dim_param: Some("batch".into()) },
            })
            .collect();
        GraphProto {
            node: self.nodes,
            name: "drsn".into(),
            initializer: self.initializers,
            input: vec![value_info(input, Some(TensorShapeProto { dim: dims }))],
            output: outputs.iter().map(|name| value_info(name, None)).collect(),
        }
    }
}

fn value_info(name: &str, shape: Option<TensorShapeProto>) -> ValueInfoProto {
    let tensor_type = TensorTypeProto { elem_type: FLOAT, shape };
    ValueInfoProto { name: name.to_string(), r#type: Some(TypeProto { tensor_type: Some(tensor_type) }) }
}

pub fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i, r#type: ATTR_INT, ..Default::default() }
}

pub fn ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: ints.to_vec(), r#type: ATTR_INTS, ..Default::default() }
}

pub fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f, r#type: ATTR_FLOAT, ..Default::default() }
}
